//! allowedips
