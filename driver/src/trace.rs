//! The driver's debug trace: `DbgPrint` lines (via `wdk::println!`) filtered by a global level.
//!
//! The level starts at [`Level::DEFAULT`] and `DriverEntry` replaces it with the service's
//! `Parameters\TraceLevel` REG_DWORD when present. Lines are prefixed `ktmrm:` so a DebugView or
//! WinDbg filter can pick them out. `DbgPrint` output is itself filtered by the kernel's
//! component mask (`Kd_DEFAULT_Mask`); README.md (Windows section) says how to see it.

use core::sync::atomic::{AtomicU8, Ordering};

/// How much the driver traces. Each level includes the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    /// Nothing.
    Off = 0,
    /// Failures: a kernel call that failed, a request the driver had to refuse for its own reasons.
    Error = 1,
    /// Surprises that are handled (a late notification, an engine status the driver corrected).
    Warn = 2,
    /// Lifecycle: load, unload, object creation, each BEGIN and enlistment.
    Info = 3,
    /// Every IOCTL and every KTM notification.
    Verbose = 4,
}

impl Level {
    /// The level before the registry is read.
    pub const DEFAULT: Level = Level::Warn;

    /// The level a `TraceLevel` REG_DWORD asks for; values above 4 mean [`Level::Verbose`].
    #[must_use]
    pub const fn from_registry(value: u32) -> Level {
        match value {
            0 => Level::Off,
            1 => Level::Error,
            2 => Level::Warn,
            3 => Level::Info,
            _ => Level::Verbose,
        }
    }

    const fn from_u8(value: u8) -> Level {
        Level::from_registry(value as u32)
    }

    /// The tag printed after `ktmrm:`.
    #[must_use]
    pub const fn tag(self) -> &'static str {
        match self {
            Level::Off => "off",
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Verbose => "verbose",
        }
    }
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::DEFAULT as u8);

/// Sets the global trace level.
pub fn set_level(level: Level) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

/// The global trace level.
#[must_use]
pub fn level() -> Level {
    Level::from_u8(LEVEL.load(Ordering::Relaxed))
}

/// Whether a line at `at` is printed.
#[must_use]
pub fn enabled(at: Level) -> bool {
    at != Level::Off && at <= level()
}

/// `trace!(Level::Info, "format", args..)`: one `DbgPrint` line when the level allows it.
/// Callable at IRQL <= DIRQL (`DbgPrint`'s rule); the driver only traces at PASSIVE_LEVEL or,
/// inside the state lock, APC_LEVEL. Off Windows and in unit tests the arguments are only
/// type-checked.
#[cfg_attr(all(not(windows), not(test)), allow(unused_macros))]
macro_rules! trace {
    ($level:expr, $($arg:tt)*) => {{
        let level: $crate::trace::Level = $level;
        if $crate::trace::enabled(level) {
            #[cfg(all(windows, not(test)))]
            wdk::println!("ktmrm: {}: {}", level.tag(), format_args!($($arg)*));
            #[cfg(not(all(windows, not(test))))]
            let _ = format_args!($($arg)*);
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_values_map_to_levels() {
        assert_eq!(Level::from_registry(0), Level::Off);
        assert_eq!(Level::from_registry(1), Level::Error);
        assert_eq!(Level::from_registry(2), Level::Warn);
        assert_eq!(Level::from_registry(3), Level::Info);
        assert_eq!(Level::from_registry(4), Level::Verbose);
        assert_eq!(Level::from_registry(u32::MAX), Level::Verbose);
    }

    #[test]
    fn level_filters_lines() {
        // The only test that touches the global, so tests running in parallel do not race.
        assert_eq!(level(), Level::DEFAULT);
        assert!(enabled(Level::Error) && enabled(Level::Warn) && !enabled(Level::Info));
        set_level(Level::Verbose);
        assert!(enabled(Level::Verbose));
        assert!(
            !enabled(Level::Off),
            "Off is a level to set, never a line to print"
        );
        set_level(Level::Off);
        assert!(!enabled(Level::Error));
        trace!(Level::Error, "type-checked only: {}", 42);
        set_level(Level::DEFAULT);
        assert_eq!(Level::Warn.tag(), "warn");
    }
}
