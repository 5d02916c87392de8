//! deepsearch-learner (under construction)
