//! The `asdsl` binary (stub).
fn main() {
    println!("asdsl");
}
