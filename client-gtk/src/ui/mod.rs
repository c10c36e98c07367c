//! The GTK side: widgets from composite templates; they render the
//! view-models and send commands to the backend.

pub(crate) mod devices;
pub(crate) mod stats_window;
pub(crate) mod window;
