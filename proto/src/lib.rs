//! deepsearch-proto (under construction)
