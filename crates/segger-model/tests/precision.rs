//! The float32 matmul precision is process-wide; `train` and `predict` scope it with a guard.
//! In a test binary of its own, so that no other test sees the switch change.

use segger_model::mp::{
    float32_matmul_precision, scoped_float32_matmul_precision, set_float32_matmul_precision,
    MatmulPrecision,
};

#[test]
fn the_guard_restores_the_previous_precision() {
    assert_eq!(float32_matmul_precision(), MatmulPrecision::Highest);
    {
        let _g = scoped_float32_matmul_precision(MatmulPrecision::High);
        assert_eq!(float32_matmul_precision(), MatmulPrecision::High);
        {
            let _inner = scoped_float32_matmul_precision(MatmulPrecision::Highest);
            assert_eq!(float32_matmul_precision(), MatmulPrecision::Highest);
        }
        assert_eq!(float32_matmul_precision(), MatmulPrecision::High);
    }
    assert_eq!(float32_matmul_precision(), MatmulPrecision::Highest);
    // A program's own setting survives a scoped run.
    set_float32_matmul_precision(MatmulPrecision::High);
    drop(scoped_float32_matmul_precision(MatmulPrecision::Highest));
    assert_eq!(float32_matmul_precision(), MatmulPrecision::High);
    set_float32_matmul_precision(MatmulPrecision::Highest);
}
