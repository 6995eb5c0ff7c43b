//! netconfig
