//! When a job may dial: the window engine (pure, no I/O).

pub mod stored;
pub mod window;

pub use stored::StoredSchedule;
pub use window::Window;
