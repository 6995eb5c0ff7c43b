//! apdu
