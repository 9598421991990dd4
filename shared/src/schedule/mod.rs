//! When a job may dial: the window engine (pure, no I/O).

pub mod window;

pub use window::Window;
