//! Retrieval by code distance at data-set scale: the distances from every query to every database item,
//! with the products on the engine's matmul op (GPU or CPU backend), and the codes the baselines use.
//!
//! Squared Euclidean distance ‖q − x‖² = ‖q‖² + ‖x‖² − 2·q·x: the norms on the host, the products Q·Xᵀ
//! on the executor, the database a chunk at a time so that no buffer passes an adapter's binding limit.
//! Cosine distance is the Euclidean one of unit vectors (‖a − b‖² = 2 − 2·cos), so it ranks the same.

use crate::backend::{Executor, Program};
use crate::ops::{BufId, Op};
use crate::plan::{BufferDesc, Plan};

/// At most this many floats in one buffer of the product plan (64 MiB).
const MAX_BUFFER: usize = 16 << 20;

/// Database rows per product for `queries` queries of width `width`.
pub fn chunk_rows(queries: usize, width: usize) -> usize {
    (MAX_BUFFER / queries.max(width).max(1)).clamp(1, 4096)
}

/// The plan of one chunk's products: P[queries × chunk] = Q[queries × width] · X[chunk × width]ᵀ.
pub fn product_plan(queries: usize, width: usize) -> Plan {
    let chunk = chunk_rows(queries, width);
    Plan::from_ops(
        vec![
            BufferDesc::f32("retrieve.queries", queries * width),
            BufferDesc::f32("retrieve.database", chunk * width),
            BufferDesc::f32("retrieve.products", queries * chunk),
        ],
        vec![Op::Matmul {
            a: BufId(0),
            b: BufId(1),
            c: BufId(2),
            m: queries,
            n: chunk,
            k: width,
            trans_a: false,
            trans_b: true,
            accumulate: false,
        }],
    )
}

/// Squared Euclidean distances, [queries × items] row-major, from each row of `queries` to each row of
/// `database` (rows of `width`), on `ex`, an executor of [`product_plan`]`(queries rows, width)`.
pub fn squared_distances(
    ex: &mut dyn Executor,
    queries: &[f32],
    database: &[f32],
    width: usize,
) -> Vec<f32> {
    let (nq, items) = (queries.len() / width, database.len() / width);
    let chunk = chunk_rows(nq, width);
    let norms = |rows: &[f32]| -> Vec<f32> {
        rows.chunks_exact(width)
            .map(|r| r.iter().map(|v| v * v).sum())
            .collect()
    };
    let (query_norms, item_norms) = (norms(queries), norms(database));
    ex.write_f32(BufId(0), queries);
    let mut distances = vec![0f32; nq * items];
    let mut block = vec![0f32; chunk * width];
    for start in (0..items).step_by(chunk) {
        let rows = chunk.min(items - start);
        block.fill(0.0);
        block[..rows * width].copy_from_slice(&database[start * width..(start + rows) * width]);
        ex.write_f32(BufId(1), &block);
        ex.run(Program::FORWARD_BACKWARD, 1);
        let products = ex.read_f32(BufId(2));
        for q in 0..nq {
            for j in 0..rows {
                distances[q * items + start + j] =
                    query_norms[q] + item_norms[start + j] - 2.0 * products[q * chunk + j];
            }
        }
    }
    distances
}

/// Each row of `rows` (of `width`) scaled to unit length (a zero row stays zero).
pub fn normalised(rows: &[f32], width: usize) -> Vec<f32> {
    rows.chunks_exact(width)
        .flat_map(|r| {
            let norm = r.iter().map(|v| v * v).sum::<f32>().sqrt();
            let scale = if norm > 0.0 { 1.0 / norm } else { 0.0 };
            r.iter().map(move |v| v * scale)
        })
        .collect()
}

/// Hamming distances between the signs of `queries` and `database` rows (a bit set where a value > 0),
/// [queries × items] row-major, as f32 for [`super::retrieval::distance_retrieval`].
pub fn hamming_distances(queries: &[f32], database: &[f32], width: usize) -> Vec<f32> {
    let words = width.div_ceil(64);
    let (q, x) = (
        super::retrieval::pack_signs(queries, width),
        super::retrieval::pack_signs(database, width),
    );
    q.chunks_exact(words)
        .flat_map(|a| {
            x.chunks_exact(words).map(move |b| {
                a.iter()
                    .zip(b)
                    .map(|(u, v)| (u ^ v).count_ones())
                    .sum::<u32>() as f32
            })
        })
        .collect()
}

/// Pixels as rows of floats in [0, 1].
pub fn pixels(bytes: &[u8]) -> Vec<f32> {
    bytes.iter().map(|&p| p as f32 / 255.0).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::CpuExecutor;

    /// The chunked products give every squared distance (more items than a chunk, a partial last one).
    #[test]
    fn distances_through_the_matmul_equal_the_direct_sums() {
        let (nq, items, width) = (3, 4096 + 5, 7);
        let value = |i: usize| ((i * 37 % 101) as f32 / 101.0) - 0.3;
        let queries: Vec<f32> = (0..nq * width).map(value).collect();
        let database: Vec<f32> = (0..items * width).map(|i| value(i + 11)).collect();
        let mut ex = CpuExecutor::<f32>::new(product_plan(nq, width));
        let got = squared_distances(&mut ex, &queries, &database, width);
        for q in 0..nq {
            for j in [0, 1, 4095, 4096, items - 1] {
                let want: f32 = (0..width)
                    .map(|c| (queries[q * width + c] - database[j * width + c]).powi(2))
                    .sum();
                assert!((got[q * items + j] - want).abs() < 1e-5, "{q}, {j}");
            }
        }
    }

    #[test]
    fn hamming_distances_count_differing_signs() {
        let a = [1.0, -1.0, 0.5, 0.0];
        let b = [1.0, 1.0, -0.5, 0.0, -1.0, -1.0, -1.0, -1.0];
        assert_eq!(hamming_distances(&a, &b, 4), vec![2.0, 2.0]);
    }
}
