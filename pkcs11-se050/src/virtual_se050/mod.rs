//! virtual_se050
