//! applet
