//! (stub) kernel arguments and the generic body.
use std::marker::PhantomData;

/// Arguments of one kernel call.
#[derive(Debug)]
pub struct KernelArgs<'a> {
    _p: PhantomData<&'a ()>,
}
