//! segger-model
