//! A preallocated key/value cache for one attention layer.

use lmrs_core::{DType, Device, Error, Result, Tensor};

/// Keys and values `(b, heads, max_len, head_dim)` allocated once; each step writes its new
/// positions in place (no concatenation) and reads back a view of the filled prefix.
#[derive(Debug, Clone)]
pub struct KvCache {
    k: Tensor,
    v: Tensor,
    len: usize,
}

impl KvCache {
    /// Allocate room for `max_len` positions.
    pub fn new(
        batch: usize,
        heads: usize,
        max_len: usize,
        head_dim: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        crate::memory::check_allocation(
            crate::memory::tensor_bytes(&[2, batch, heads, max_len, head_dim], dtype),
            "the key/value cache",
        )?;
        let shape = (batch, heads, max_len, head_dim);
        Ok(Self {
            k: Tensor::zeros(shape, dtype, device)?,
            v: Tensor::zeros(shape, dtype, device)?,
            len: 0,
        })
    }

    /// Positions stored.
    pub fn len(&self) -> usize {
        self.len
    }

    /// `true` when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `(batch, heads, capacity, head_dim, dtype)` of the stored keys.
    pub fn key_dims(&self) -> (usize, usize, usize, usize, DType) {
        let d = self.k.dims();
        (d[0], d[1], d[2], d[3], self.k.dtype())
    }

    /// Allocated capacity in positions.
    pub fn capacity(&self) -> usize {
        self.k.dims()[2]
    }

    /// Reallocate to `capacity` slots (at least the stored ones), keeping what is stored.
    pub fn grow_to(&mut self, capacity: usize) -> Result<()> {
        if capacity <= self.capacity() {
            return Ok(());
        }
        let (b, h, _, d) = self.k.dims4()?;
        crate::memory::check_allocation(
            crate::memory::tensor_bytes(&[2, b, h, capacity, d], self.k.dtype()),
            "the key/value cache",
        )?;
        self.k = Self::placed(&self.k, 0, self.len, 0, capacity)?;
        self.v = Self::placed(&self.v, 0, self.len, 0, capacity)?;
        Ok(())
    }

    /// Forget every position.
    pub fn reset(&mut self) {
        self.len = 0;
    }

    /// Keep the first `len` positions.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// [`Self::append`], first doubling the capacity when the new positions do not fit: for
    /// models without a position limit, whose callers allocate for common output lengths
    /// rather than for a user's upper bound (which can be far beyond memory).
    pub fn append_growing(&mut self, k_new: &Tensor, v_new: &Tensor) -> Result<(Tensor, Tensor)> {
        let needed = self.len + k_new.dim(2)?;
        if needed > self.capacity() {
            self.grow_to(needed.max(self.capacity().saturating_mul(2)))?;
        }
        self.append(k_new, v_new)
    }

    /// Write `k_new`/`v_new` `(b, heads, t, head_dim)` after the stored positions and return
    /// views `(b, heads, len, head_dim)` of everything stored.
    pub fn append(&mut self, k_new: &Tensor, v_new: &Tensor) -> Result<(Tensor, Tensor)> {
        let t = k_new.dim(2)?;
        if self.len + t > self.capacity() {
            return Err(Error::InvalidInput(format!(
                "decoding past the cache capacity of {} positions",
                self.capacity()
            )));
        }
        self.k.slice_set(&k_new.contiguous()?, 2, self.len)?;
        self.v.slice_set(&v_new.contiguous()?, 2, self.len)?;
        self.len += t;
        Ok((
            self.k.narrow(2, 0, self.len)?,
            self.v.narrow(2, 0, self.len)?,
        ))
    }

    /// A new cache of `capacity` slots, `len` of them stored, holding the rows of every part in
    /// order: for a part `(cache, from, at)`, slots `from..cache.len()` are copied to slots
    /// `at..`; every other slot is zero.
    pub fn gather(parts: &[(&KvCache, usize, usize)], capacity: usize, len: usize) -> Result<Self> {
        let mut ks = Vec::with_capacity(parts.len());
        let mut vs = Vec::with_capacity(parts.len());
        for &(c, from, at) in parts {
            let n = c.len.checked_sub(from).ok_or_else(|| {
                Error::InvalidInput(format!("gather from slot {from} of {} stored", c.len))
            })?;
            if at + n > len || len > capacity {
                return Err(Error::InvalidInput(format!(
                    "gather: {n} slots at {at} do not fit {len} stored of {capacity}"
                )));
            }
            ks.push(Self::placed(&c.k, from, n, at, capacity)?);
            vs.push(Self::placed(&c.v, from, n, at, capacity)?);
        }
        Ok(Self {
            k: Tensor::cat(&ks, 0)?,
            v: Tensor::cat(&vs, 0)?,
            len,
        })
    }

    /// `(b, heads, capacity, head_dim)` zeros with `t`'s slots `from..from + n` at `at..`.
    fn placed(t: &Tensor, from: usize, n: usize, at: usize, capacity: usize) -> Result<Tensor> {
        let (b, h, _, d) = t.dims4()?;
        let out = Tensor::zeros((b, h, capacity, d), t.dtype(), t.device())?;
        if n > 0 {
            out.slice_set(&t.narrow(2, from, n)?.contiguous()?, 2, at)?;
        }
        Ok(out)
    }

    /// New row `i` is old row `rows[i]` (beam reordering, finished rows leaving).
    pub fn reorder(&mut self, rows: &Tensor) -> Result<()> {
        self.k = self.k.index_select(rows, 0)?;
        self.v = self.v.index_select(rows, 0)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_past_capacity_grows_and_keeps_the_stored_positions() -> Result<()> {
        let dev = Device::Cpu;
        let mut c = KvCache::new(1, 1, 1, 2, DType::F32, &dev)?;
        let a = Tensor::new(&[[[[1f32, 2.]]]], &dev)?;
        let b = Tensor::new(&[[[[3f32, 4.], [5., 6.]]]], &dev)?;
        c.append_growing(&a, &a)?;
        let (k, _) = c.append_growing(&b, &b)?;
        assert_eq!(c.capacity(), 3);
        assert_eq!(
            k.flatten_all()?.to_vec1::<f32>()?,
            vec![1., 2., 3., 4., 5., 6.]
        );
        Ok(())
    }

    #[test]
    fn an_allocation_beyond_memory_is_an_error() {
        let err = KvCache::new(1 << 20, 64, 1 << 20, 128, DType::F32, &Device::Cpu).unwrap_err();
        assert!(err.to_string().contains("key/value cache"), "{err}");
    }

    #[test]
    fn append_writes_in_place_and_reorders() -> Result<()> {
        let dev = Device::Cpu;
        let mut c = KvCache::new(2, 1, 4, 2, DType::F32, &dev)?;
        let a = Tensor::new(&[[[[1f32, 2.]]], [[[3., 4.]]]], &dev)?;
        let (k, _) = c.append(&a, &a)?;
        assert_eq!(k.dims(), &[2, 1, 1, 2]);
        let b = Tensor::new(&[[[[5f32, 6.]]], [[[7., 8.]]]], &dev)?;
        let (k, v) = c.append(&b, &b)?;
        assert_eq!(
            k.flatten_all()?.to_vec1::<f32>()?,
            vec![1., 2., 5., 6., 3., 4., 7., 8.]
        );
        assert_eq!(v.dims(), &[2, 1, 2, 2]);
        c.reorder(&Tensor::new(&[1u32, 1], &dev)?)?;
        let (k, _) = c.append(&b, &b)?;
        assert_eq!(
            k.flatten_all()?.to_vec1::<f32>()?,
            vec![3., 4., 7., 8., 5., 6., 3., 4., 7., 8., 7., 8.]
        );
        c.append(&b, &b)?;
        assert!(c.append(&b, &b).is_err(), "capacity is enforced");
        Ok(())
    }

    #[test]
    fn gather_places_slots_and_keeps_room() -> Result<()> {
        let dev = Device::Cpu;
        let mut a = KvCache::new(1, 1, 4, 1, DType::F32, &dev)?;
        let x = Tensor::new(&[[[[1f32], [2.], [3.]]]], &dev)?;
        a.append(&x, &x)?;
        let mut b = KvCache::new(2, 1, 2, 1, DType::F32, &dev)?;
        let y = Tensor::new(&[[[[4f32]]], [[[5.]]]], &dev)?;
        b.append(&y, &y)?;
        // a's slots 1..3 at 0, b's only slot at 1; one slot of room.
        let mut g = KvCache::gather(&[(&a, 1, 0), (&b, 0, 1)], 3, 2)?;
        assert_eq!((g.len(), g.capacity()), (2, 3));
        let z = Tensor::new(&[[[[9f32]]], [[[9.]]], [[[9.]]]], &dev)?;
        let (k, _) = g.append(&z, &z)?;
        assert_eq!(
            k.flatten_all()?.to_vec1::<f32>()?,
            vec![2., 3., 9., 0., 4., 9., 0., 5., 9.]
        );
        assert!(KvCache::gather(&[(&a, 4, 0)], 3, 2).is_err());
        assert!(
            KvCache::gather(&[(&a, 0, 1)], 3, 2).is_err(),
            "3 slots at 1 overflow"
        );
        Ok(())
    }
}
