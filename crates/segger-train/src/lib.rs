//! segger-train
