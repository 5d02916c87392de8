//! deepsearch-coordinator (under construction)
