//! Build script: on a Windows host, wdk-build emits the kernel link flags (`/DRIVER`,
//! `/SUBSYSTEM:NATIVE`, `/ENTRY:DriverEntry`, `/INTEGRITYCHECK`, the WDK library paths) for the
//! cdylib, and checks that the static CRT is enabled (`.cargo/config.toml`). Elsewhere it does
//! nothing: the crate then builds only its portable modules.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    #[cfg(windows)]
    wdk_build::configure_wdk_binary_build()?;
    Ok(())
}
