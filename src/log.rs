//! Progress events: `tracing` with the `tracing` feature, nothing without it.

#[cfg(feature = "tracing")]
#[allow(unused_macros)] // used by the HTTP layer only
macro_rules! debug {
    ($($t:tt)*) => { ::tracing::debug!($($t)*) };
}
#[cfg(feature = "tracing")]
macro_rules! info {
    ($($t:tt)*) => { ::tracing::info!($($t)*) };
}
#[cfg(feature = "tracing")]
macro_rules! warning {
    ($($t:tt)*) => { ::tracing::warn!($($t)*) };
}
#[cfg(feature = "tracing")]
macro_rules! error {
    ($($t:tt)*) => { ::tracing::error!($($t)*) };
}

#[cfg(not(feature = "tracing"))]
#[allow(unused_macros)] // used by the HTTP layer only
macro_rules! debug {
    ($($t:tt)*) => {{ let _ = format_args!($($t)*); }};
}
#[cfg(not(feature = "tracing"))]
macro_rules! info {
    ($($t:tt)*) => {{ let _ = format_args!($($t)*); }};
}
#[cfg(not(feature = "tracing"))]
macro_rules! warning {
    ($($t:tt)*) => {{ let _ = format_args!($($t)*); }};
}
#[cfg(not(feature = "tracing"))]
macro_rules! error {
    ($($t:tt)*) => {{ let _ = format_args!($($t)*); }};
}

#[allow(unused_imports)]
pub(crate) use {debug, error, info, warning};
