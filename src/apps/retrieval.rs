//! How well codes retrieve: each query ranks the whole database by distance between codes, and an item
//! is relevant when it has the query's label. Binary codes (signs of a hashing model's latent) are ranked
//! by Hamming distance ([`hamming_retrieval`]); real codes, raw pixels or PCA projections by Euclidean
//! distance ([`euclidean_retrieval`]), the baseline.
//!
//! Both report mean average precision over the full ranking and precision at k, with ties in distance
//! broken by database index (lower first), so the numbers are reproducible: with binary codes many items
//! share a distance, and the order inside a tie moves mAP.

/// Signs of real codes packed as bits: row r of `codes` (`width` floats) becomes ⌈width/64⌉ words, code j
/// setting bit j % 64 (least significant first) of word j / 64 when it is > 0; zero and NaN count as
/// negative. Rows are concatenated: the result has rows × ⌈width/64⌉ words.
pub fn pack_signs(codes: &[f32], width: usize) -> Vec<u64> {
    assert!(width > 0, "pack_signs: a code needs at least one bit");
    assert!(
        codes.len().is_multiple_of(width),
        "pack_signs: {} floats is not a whole number of rows of width {width}",
        codes.len()
    );
    let words = width.div_ceil(64);
    let mut packed = vec![0u64; codes.len() / width * words];
    for (row, packed_row) in codes
        .chunks_exact(width)
        .zip(packed.chunks_exact_mut(words))
    {
        for (j, &code) in row.iter().enumerate() {
            if code > 0.0 {
                packed_row[j / 64] |= 1u64 << (j % 64);
            }
        }
    }
    packed
}

/// Means over the queries of a retrieval run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetrievalScores {
    /// Mean over queries of average precision (see [`hamming_retrieval`]); NaN when there are no queries.
    pub mean_average_precision: f64,
    /// Mean over queries of (relevant items among the first k) / k; NaN when there are no queries.
    pub precision_at_k: f64,
    /// How many queries were averaged.
    pub queries: usize,
    /// The k used: the k asked for, or the database size when that is smaller.
    pub k: usize,
}

/// Rank a database of packed binary codes for each query by Hamming distance (popcount of the XOR over
/// `words` u64 words a code, as [`pack_signs`] makes them); relevant = same label.
///
/// Ties in distance are broken by database index, lower first (a stable sort). Average precision of one
/// query = (1/R) Σ over its R relevant items of (relevant items ranked at or above it) / (its rank), over
/// the full ranking; a query whose label no database item has contributes 0. Precision at k = relevant
/// among the first k / k, with k capped at the database size. The ranking is a counting sort on the
/// distance (0..=64·words): O(queries × items × words) time, one pass each.
pub fn hamming_retrieval(
    queries: &[u64],
    query_labels: &[u8],
    database: &[u64],
    database_labels: &[u8],
    words: usize,
    k: usize,
) -> RetrievalScores {
    assert!(
        words > 0,
        "hamming_retrieval: a code needs at least one word"
    );
    assert_eq!(
        queries.len(),
        query_labels.len() * words,
        "hamming_retrieval: {} query words for {} labels of {words} words each",
        queries.len(),
        query_labels.len()
    );
    assert_eq!(
        database.len(),
        database_labels.len() * words,
        "hamming_retrieval: {} database words for {} labels of {words} words each",
        database.len(),
        database_labels.len()
    );
    let k = checked_k(k, database_labels.len(), "hamming_retrieval");
    let mut distances = vec![0u32; database_labels.len()];
    // next_slot[d]: where the next item at distance d goes in the ranking.
    let mut next_slot = vec![0usize; 64 * words + 1];
    let mut ranked_labels = vec![0u8; database_labels.len()];
    let mut totals = QueryTotals::default();
    for (query, &query_label) in queries.chunks_exact(words).zip(query_labels) {
        next_slot.fill(0);
        for (distance, item) in distances.iter_mut().zip(database.chunks_exact(words)) {
            *distance = query
                .iter()
                .zip(item)
                .map(|(q, x)| (q ^ x).count_ones())
                .sum();
            next_slot[*distance as usize] += 1;
        }
        let mut start = 0;
        for slot in next_slot.iter_mut() {
            let count = *slot;
            *slot = start;
            start += count;
        }
        // Visiting items in index order keeps each tie in index order.
        for (&distance, &label) in distances.iter().zip(database_labels) {
            let slot = &mut next_slot[distance as usize];
            ranked_labels[*slot] = label;
            *slot += 1;
        }
        totals.add(score_ranking(
            ranked_labels.iter().map(|&label| label == query_label),
            k,
        ));
    }
    totals.means(k)
}

/// Rank a database of real codes (`width` floats a row) for each query by squared Euclidean distance
/// Σⱼ (qⱼ − xⱼ)², summed in f32; relevant = same label. Ties by database index, lower first; average
/// precision and precision at k as in [`hamming_retrieval`]; a NaN distance ranks last.
///
/// Cost: queries × items × width multiply-adds plus a sort of the items per query — about a second for
/// 1000 queries against 60000 items of width 32, about 20 s at width 784 (use fewer items or PCA codes).
pub fn euclidean_retrieval(
    queries: &[f32],
    query_labels: &[u8],
    database: &[f32],
    database_labels: &[u8],
    width: usize,
    k: usize,
) -> RetrievalScores {
    assert!(
        width > 0,
        "euclidean_retrieval: a code needs at least one coordinate"
    );
    assert_eq!(
        queries.len(),
        query_labels.len() * width,
        "euclidean_retrieval: {} query floats for {} labels of width {width}",
        queries.len(),
        query_labels.len()
    );
    assert_eq!(
        database.len(),
        database_labels.len() * width,
        "euclidean_retrieval: {} database floats for {} labels of width {width}",
        database.len(),
        database_labels.len()
    );
    assert!(
        u32::try_from(database_labels.len()).is_ok(),
        "euclidean_retrieval: {} database items is more than the ranking's 32-bit index holds",
        database_labels.len()
    );
    let k = checked_k(k, database_labels.len(), "euclidean_retrieval");
    let mut keys = Vec::with_capacity(database_labels.len());
    let mut totals = QueryTotals::default();
    for (query, &query_label) in queries.chunks_exact(width).zip(query_labels) {
        let distances = database
            .chunks_exact(width)
            .map(|item| squared_distance(query, item));
        let (scores, _) = rank_query(&mut keys, distances, database_labels, query_label, k, 0);
        totals.add(scores);
    }
    totals.means(k)
}

/// Retrieval from precomputed distances: `distances` holds one row of `database_labels.len()` values per
/// query (any distance: smaller is nearer). Ranking, ties and scores as in [`euclidean_retrieval`];
/// returns the scores and each query's first `top` database indices.
pub fn distance_retrieval(
    distances: &[f32],
    query_labels: &[u8],
    database_labels: &[u8],
    k: usize,
    top: usize,
) -> (RetrievalScores, Vec<Vec<u32>>) {
    let items = database_labels.len();
    assert_eq!(
        distances.len(),
        query_labels.len() * items,
        "distance_retrieval: {} distances for {} queries of {items} items",
        distances.len(),
        query_labels.len()
    );
    assert!(
        u32::try_from(items).is_ok(),
        "distance_retrieval: {items} database items is more than the ranking's 32-bit index holds"
    );
    let k = checked_k(k, items, "distance_retrieval");
    let mut keys = Vec::with_capacity(items);
    let mut totals = QueryTotals::default();
    let mut tops = Vec::with_capacity(query_labels.len());
    for (row, &query_label) in distances.chunks_exact(items).zip(query_labels) {
        let (scores, first) = rank_query(
            &mut keys,
            row.iter().copied(),
            database_labels,
            query_label,
            k,
            top,
        );
        totals.add(scores);
        tops.push(first);
    }
    (totals.means(k), tops)
}

/// One query's ranking of the database by `distances` (one per item, in index order): its scores and
/// its first `top` item indices. One u64 key per item, (distance bits << 32) | index: sorting the keys
/// sorts by (distance, index), since a non-negative f32's bit pattern orders like its value; a NaN (or a
/// negative rounding residue, clamped to 0) is handled so that NaN ranks last.
fn rank_query(
    keys: &mut Vec<u64>,
    distances: impl Iterator<Item = f32>,
    labels: &[u8],
    query_label: u8,
    k: usize,
    top: usize,
) -> (RankingScores, Vec<u32>) {
    keys.clear();
    for (index, distance) in distances.enumerate() {
        let distance_bits = if distance.is_nan() {
            u32::MAX
        } else if distance > 0.0 {
            distance.to_bits()
        } else {
            0
        };
        keys.push(u64::from(distance_bits) << 32 | index as u64);
    }
    keys.sort_unstable();
    let ranked_relevance = keys
        .iter()
        .map(|&key| labels[(key & 0xFFFF_FFFF) as usize] == query_label);
    let first = keys.iter().take(top).map(|&key| key as u32).collect();
    (score_ranking(ranked_relevance, k), first)
}

/// Σⱼ (aⱼ − bⱼ)² in f32, in eight independent lanes so the loop vectorises.
fn squared_distance(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 8;
    let mut lanes = [0.0f32; LANES];
    let (mut a_chunks, mut b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    for (a_chunk, b_chunk) in (&mut a_chunks).zip(&mut b_chunks) {
        for ((lane, &x), &y) in lanes.iter_mut().zip(a_chunk).zip(b_chunk) {
            *lane += (x - y) * (x - y);
        }
    }
    let tail: f32 = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(&x, &y)| (x - y) * (x - y))
        .sum();
    lanes.iter().sum::<f32>() + tail
}

/// k ≥ 1, capped at the database size.
fn checked_k(k: usize, database_items: usize, caller: &str) -> usize {
    assert!(k > 0, "{caller}: precision at k needs k ≥ 1");
    assert!(database_items > 0, "{caller}: the database is empty");
    k.min(database_items)
}

/// One query's scores, from its ranking.
#[derive(Debug, PartialEq)]
struct RankingScores {
    average_precision: f64,
    relevant_in_first_k: usize,
}

/// Average precision = (1/R) Σ over the R relevant items, at 1-based rank r with h relevant items at ranks
/// ≤ r, of h / r (0 when R = 0); and the count of relevant items among the first k ranks.
fn score_ranking(ranked_relevance: impl Iterator<Item = bool>, k: usize) -> RankingScores {
    let mut relevant_so_far = 0usize;
    let mut precision_sum = 0.0;
    let mut relevant_in_first_k = 0;
    for (position, relevant) in ranked_relevance.enumerate() {
        if relevant {
            relevant_so_far += 1;
            precision_sum += relevant_so_far as f64 / (position + 1) as f64;
            if position < k {
                relevant_in_first_k += 1;
            }
        }
    }
    let average_precision = if relevant_so_far == 0 {
        0.0
    } else {
        precision_sum / relevant_so_far as f64
    };
    RankingScores {
        average_precision,
        relevant_in_first_k,
    }
}

/// Sums over queries, for the means.
#[derive(Default)]
struct QueryTotals {
    queries: usize,
    average_precision: f64,
    relevant_in_first_k: usize,
}

impl QueryTotals {
    fn add(&mut self, scores: RankingScores) {
        self.queries += 1;
        self.average_precision += scores.average_precision;
        self.relevant_in_first_k += scores.relevant_in_first_k;
    }

    fn means(&self, k: usize) -> RetrievalScores {
        let queries = self.queries as f64;
        RetrievalScores {
            mean_average_precision: self.average_precision / queries,
            precision_at_k: self.relevant_in_first_k as f64 / (k as f64 * queries),
            queries: self.queries,
            k,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SplitMix64: enough randomness for test codes, and no dependency.
    struct TestRng(u64);
    impl TestRng {
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn below(&mut self, bound: u64) -> u64 {
            self.next_u64() % bound
        }
        fn uniform(&mut self) -> f32 {
            (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        }
        fn labels(&mut self, count: usize, classes: u64) -> Vec<u8> {
            (0..count).map(|_| self.below(classes) as u8).collect()
        }
    }

    /// The definitions written out directly: rank by sorting (distance, index) pairs, then average the
    /// precision at each relevant item's rank, and count relevant items in the first min(k, n).
    fn reference_scores(
        distances_per_query: &[Vec<f64>],
        query_labels: &[u8],
        database_labels: &[u8],
        k: usize,
    ) -> RetrievalScores {
        let mut average_precisions = Vec::new();
        let mut precisions_at_k = Vec::new();
        let k = k.min(database_labels.len());
        for (distances, &label) in distances_per_query.iter().zip(query_labels) {
            let mut order: Vec<(f64, usize)> = distances.iter().copied().zip(0..).collect();
            order.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let relevance: Vec<bool> = order
                .iter()
                .map(|&(_, index)| database_labels[index] == label)
                .collect();
            let relevant_ranks: Vec<usize> = (1..=relevance.len())
                .filter(|&rank| relevance[rank - 1])
                .collect();
            let precisions: Vec<f64> = relevant_ranks
                .iter()
                .map(|&rank| relevance[..rank].iter().filter(|&&r| r).count() as f64 / rank as f64)
                .collect();
            let average_precision = if precisions.is_empty() {
                0.0
            } else {
                precisions.iter().sum::<f64>() / precisions.len() as f64
            };
            average_precisions.push(average_precision);
            precisions_at_k.push(relevance[..k].iter().filter(|&&r| r).count() as f64 / k as f64);
        }
        let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
        RetrievalScores {
            mean_average_precision: mean(&average_precisions),
            precision_at_k: mean(&precisions_at_k),
            queries: query_labels.len(),
            k,
        }
    }

    fn assert_scores_match(actual: RetrievalScores, expected: RetrievalScores) {
        assert_eq!((actual.queries, actual.k), (expected.queries, expected.k));
        assert!(
            (actual.mean_average_precision - expected.mean_average_precision).abs() < 1e-12,
            "mAP {} against {}",
            actual.mean_average_precision,
            expected.mean_average_precision
        );
        assert!(
            (actual.precision_at_k - expected.precision_at_k).abs() < 1e-12,
            "P@k {} against {}",
            actual.precision_at_k,
            expected.precision_at_k
        );
    }

    #[test]
    fn average_precision_of_a_hand_computed_ranking() {
        // Relevant at ranks 1 and 3: AP = (1/1 + 2/3) / 2; two relevant in the first 3.
        let ranking = [true, false, true, false, false];
        let scores = score_ranking(ranking.into_iter(), 3);
        assert!((scores.average_precision - (1.0 + 2.0 / 3.0) / 2.0).abs() < 1e-15);
        assert_eq!(scores.relevant_in_first_k, 2);
        assert_eq!(score_ranking(ranking.into_iter(), 1).relevant_in_first_k, 1);
        assert_eq!(score_ranking(ranking.into_iter(), 2).relevant_in_first_k, 1);
    }

    #[test]
    fn average_precision_is_zero_without_relevant_items_and_one_when_they_lead() {
        assert_eq!(
            score_ranking([false; 4].into_iter(), 2).average_precision,
            0.0
        );
        assert_eq!(
            score_ranking([true, true, false].into_iter(), 2).average_precision,
            1.0
        );
    }

    #[test]
    fn hamming_precision_at_k_and_average_precision_on_a_small_database() {
        // Distances 3, 0, 2, 1, 4 from the query 0: ranking is items 1, 3, 2, 0, 4 with labels
        // 7, 5, 7, 7, 5; relevant (label 7) at ranks 1, 3, 4.
        let database = [0b111, 0b0, 0b11, 0b1000, 0b1111];
        let database_labels = [7, 7, 7, 5, 5];
        let scores = |k| hamming_retrieval(&[0], &[7], &database, &database_labels, 1, k);
        let expected_ap = (1.0 / 1.0 + 2.0 / 3.0 + 3.0 / 4.0) / 3.0;
        assert!((scores(1).mean_average_precision - expected_ap).abs() < 1e-15);
        assert_eq!(scores(1).precision_at_k, 1.0);
        assert_eq!(scores(2).precision_at_k, 0.5);
        assert!((scores(3).precision_at_k - 2.0 / 3.0).abs() < 1e-15);
        assert_eq!(scores(3).queries, 1);
    }

    #[test]
    fn k_beyond_the_database_is_capped_at_its_size() {
        let scores = hamming_retrieval(&[0], &[1], &[0, 1, 3], &[1, 0, 1], 1, 10);
        assert_eq!(scores.k, 3);
        assert!((scores.precision_at_k - 2.0 / 3.0).abs() < 1e-15);
    }

    #[test]
    fn ties_in_distance_are_broken_by_database_index() {
        // Every item is at distance 0: the ranking is the database order.
        let relevant_second = hamming_retrieval(&[5], &[1], &[5, 5], &[0, 1], 1, 1);
        assert_eq!(relevant_second.mean_average_precision, 0.5);
        assert_eq!(relevant_second.precision_at_k, 0.0);
        let relevant_first = hamming_retrieval(&[5], &[1], &[5, 5], &[1, 0], 1, 1);
        assert_eq!(relevant_first.mean_average_precision, 1.0);
        assert_eq!(relevant_first.precision_at_k, 1.0);
        let relevant_second =
            euclidean_retrieval(&[0.5, 2.0], &[1], &[1.5, 2.0, -0.5, 2.0], &[0, 1], 2, 1);
        assert_eq!(relevant_second.mean_average_precision, 0.5);
        let relevant_first =
            euclidean_retrieval(&[0.5, 2.0], &[1], &[1.5, 2.0, -0.5, 2.0], &[1, 0], 2, 1);
        assert_eq!(relevant_first.mean_average_precision, 1.0);
    }

    #[test]
    fn no_queries_give_nan_means() {
        let scores = hamming_retrieval(&[], &[], &[1, 2], &[0, 1], 1, 1);
        assert_eq!(scores.queries, 0);
        assert!(scores.mean_average_precision.is_nan() && scores.precision_at_k.is_nan());
    }

    #[test]
    fn pack_signs_sets_bit_j_of_word_j_over_64_for_positive_codes() {
        // Width 1: one word a row; zero and NaN are negative.
        assert_eq!(
            pack_signs(&[0.5, -0.5, 0.0, f32::NAN, 1e-30], 1),
            vec![1, 0, 0, 0, 1]
        );
        // Width 64: one word; code j is bit j.
        let mut codes = vec![-1.0f32; 128];
        codes[0] = 1.0;
        codes[63] = 1.0;
        codes[64 + 5] = 2.0;
        assert_eq!(pack_signs(&codes, 64), vec![1 | 1 << 63, 1 << 5]);
        // Width 65: two words a row; code 64 is bit 0 of the second word, the rest of it stays clear.
        let mut codes = vec![-1.0f32; 130];
        codes[64] = 1.0;
        codes[65 + 1] = 1.0;
        assert_eq!(pack_signs(&codes, 65), vec![0, 1, 1 << 1, 0]);
    }

    #[test]
    fn hamming_ranking_matches_a_brute_force_reference() {
        // 70-bit codes (two words, the second partly used) with few distinct distances, so many ties.
        let mut rng = TestRng(11);
        let (width, queries, items) = (70, 25, 300);
        let mut random_codes = |rows: usize| -> Vec<f32> {
            (0..rows * width)
                .map(|_| if rng.below(4) == 0 { 1.0 } else { -1.0 })
                .collect()
        };
        let (query_codes, database_codes) = (random_codes(queries), random_codes(items));
        let mut rng = TestRng(12);
        let (query_labels, database_labels) = (rng.labels(queries, 4), rng.labels(items, 4));
        // Reference distances count differing signs in the unpacked codes.
        let distances: Vec<Vec<f64>> = query_codes
            .chunks(width)
            .map(|q| {
                database_codes
                    .chunks(width)
                    .map(|x| {
                        q.iter()
                            .zip(x)
                            .filter(|(a, b)| (**a > 0.0) != (**b > 0.0))
                            .count() as f64
                    })
                    .collect()
            })
            .collect();
        let words = 2;
        let (packed_queries, packed_database) = (
            pack_signs(&query_codes, width),
            pack_signs(&database_codes, width),
        );
        for k in [1, 10, 100, 300] {
            let actual = hamming_retrieval(
                &packed_queries,
                &query_labels,
                &packed_database,
                &database_labels,
                words,
                k,
            );
            assert_scores_match(
                actual,
                reference_scores(&distances, &query_labels, &database_labels, k),
            );
        }
    }

    #[test]
    fn euclidean_ranking_matches_a_brute_force_reference() {
        // Small integer coordinates: distances are exact in f32 and f64 alike, and many tie.
        let mut rng = TestRng(13);
        let (width, queries, items) = (11, 20, 250);
        let mut random_codes = |rows: usize| -> Vec<f32> {
            (0..rows * width)
                .map(|_| rng.below(3) as f32 - 1.0)
                .collect()
        };
        let (query_codes, database_codes) = (random_codes(queries), random_codes(items));
        let mut rng = TestRng(14);
        let (query_labels, database_labels) = (rng.labels(queries, 3), rng.labels(items, 3));
        let distances: Vec<Vec<f64>> = query_codes
            .chunks(width)
            .map(|q| {
                database_codes
                    .chunks(width)
                    .map(|x| {
                        q.iter()
                            .zip(x)
                            .map(|(a, b)| (f64::from(*a) - f64::from(*b)).powi(2))
                            .sum()
                    })
                    .collect()
            })
            .collect();
        for k in [1, 7, 250] {
            let actual = euclidean_retrieval(
                &query_codes,
                &query_labels,
                &database_codes,
                &database_labels,
                width,
                k,
            );
            assert_scores_match(
                actual,
                reference_scores(&distances, &query_labels, &database_labels, k),
            );
        }
    }

    #[test]
    fn euclidean_distance_sums_every_coordinate() {
        // Widths below, at and past the eight-lane chunk.
        let mut rng = TestRng(15);
        for width in [1, 7, 8, 9, 17, 64] {
            let (a, b): (Vec<f32>, Vec<f32>) =
                (0..width).map(|_| (rng.uniform(), rng.uniform())).unzip();
            let expected: f64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
                .sum();
            assert!(
                (f64::from(squared_distance(&a, &b)) - expected).abs() < 1e-5 * expected.max(1.0)
            );
        }
    }

    #[test]
    fn euclidean_ranks_a_nan_distance_last() {
        // Item 0 has a NaN coordinate; the relevant item 1 is far but finite, so it ranks first.
        let scores = euclidean_retrieval(&[0.0], &[1], &[f32::NAN, 100.0], &[0, 1], 1, 1);
        assert_eq!(scores.mean_average_precision, 1.0);
    }
}
