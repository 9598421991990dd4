//! Route groups, one file each, merged into the app's router.

pub mod carrier;
