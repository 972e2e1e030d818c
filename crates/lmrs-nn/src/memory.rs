//! Refusing allocations that cannot fit before making them.
//!
//! Sizes derived from user input (batch × beams × output length, a config's layer count) can
//! ask for terabytes; the allocator would then abort the process instead of returning an
//! error. Buffers that grow with such input are checked here first against the memory the
//! system reports as available, so the caller gets [`Error::TooLarge`] naming what was asked.

use lmrs_core::{DType, Error, Result};

/// Bytes of a tensor of `dims` elements of `dtype` (saturating: absurd shapes stay absurd).
pub fn tensor_bytes(dims: &[usize], dtype: DType) -> u128 {
    dims.iter().fold(dtype.size_in_bytes() as u128, |acc, &d| {
        acc.saturating_mul(d as u128)
    })
}

/// `Err(TooLarge)` when `bytes` exceed the memory available now (Linux `MemAvailable`; on
/// other systems, or when it cannot be read, only sizes no address space holds are refused).
pub fn check_allocation(bytes: u128, what: &str) -> Result<()> {
    let available = available_bytes().unwrap_or(isize::MAX as u128);
    if bytes > available {
        return Err(Error::TooLarge {
            what: what.to_string(),
            needed_mib: bytes >> 20,
            available_mib: available >> 20,
        });
    }
    Ok(())
}

/// `MemAvailable` of `/proc/meminfo`, in bytes.
fn available_bytes() -> Option<u128> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u128 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_allocations_pass_and_absurd_ones_are_refused() {
        assert!(check_allocation(tensor_bytes(&[4, 8], DType::F32), "x").is_ok());
        let err =
            check_allocation(tensor_bytes(&[usize::MAX, 4], DType::F32), "the cache").unwrap_err();
        assert!(matches!(err, Error::TooLarge { .. }), "{err}");
        assert!(err.to_string().starts_with("the cache would need"), "{err}");
    }
}
