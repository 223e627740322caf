//! Small dense linear algebra for the analyses in `apps`: the eigen-decomposition of a symmetric matrix
//! (PCA of a pixel covariance), an orthonormal basis of a column space, and the principal angles between
//! two subspaces (how close the span a model learned is to the PCA subspace).
//!
//! Everything is f64 and row-major (`a[row * cols + col]`), with the sizes passed explicitly. A slice
//! whose length does not match its stated shape is a programming error and panics with the shapes named.
//!
//! Written here rather than taken from a crate (nalgebra's `SymmetricEigen`, faer): three routines of the
//! textbook algorithms (Householder tridiagonalisation with implicit QL, as EISPACK's tred2/tql2, and
//! Gram–Schmidt), checked against an independent Jacobi solver in the tests, decompose a 784×784
//! covariance in about 0.35 s, where a linear-algebra crate would add more compile time on a 2-core CI
//! machine than the whole of this module.

/// Eigen-decomposition of a symmetric n×n matrix A (row-major): A = V diag(λ) Vᵀ with V orthogonal.
///
/// Returns (λ, V): the n eigenvalues in descending order, and V as an n×n row-major matrix whose column j
/// is the unit eigenvector of λⱼ (`v[row * n + j]`); each vector's sign is arbitrary. The matrix that is
/// decomposed is (A + Aᵀ)/2, so rounding asymmetry in a computed covariance does no harm. Method:
/// Householder reduction to tridiagonal form, then the implicit QL algorithm with Wilkinson-like shifts
/// (EISPACK's tred2 and tql2, as in JAMA): about 9n³ flops, O(n²) memory. Panics on a non-finite entry.
pub fn symmetric_eigen(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    assert_eq!(
        a.len(),
        n * n,
        "symmetric_eigen: the matrix has {} entries, but n×n = {n}×{n}",
        a.len()
    );
    if let Some(position) = a.iter().position(|x| !x.is_finite()) {
        panic!(
            "symmetric_eigen: entry ({}, {}) is {}, the eigen-decomposition needs finite entries",
            position / n,
            position % n,
            a[position]
        );
    }
    if n == 0 {
        return (Vec::new(), Vec::new());
    }
    // The algorithms below work on V's columns; we hold Vᵀ (`basis[col * n + row]` = V[row][col]) so that
    // each column is a contiguous row and every inner loop runs over contiguous memory.
    let mut basis = vec![0.0; n * n];
    for row in 0..n {
        for col in 0..n {
            basis[col * n + row] = 0.5 * (a[row * n + col] + a[col * n + row]);
        }
    }
    let mut diagonal = vec![0.0; n];
    let mut off_diagonal = vec![0.0; n];
    householder_tridiagonalise(&mut basis, &mut diagonal, &mut off_diagonal, n);
    implicit_ql(&mut basis, &mut diagonal, &mut off_diagonal, n);

    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| diagonal[j].total_cmp(&diagonal[i]));
    let eigenvalues = order.iter().map(|&i| diagonal[i]).collect();
    let mut eigenvectors = vec![0.0; n * n];
    for (col, &source) in order.iter().enumerate() {
        for (row, &x) in basis[source * n..(source + 1) * n].iter().enumerate() {
            eigenvectors[row * n + col] = x;
        }
    }
    (eigenvalues, eigenvectors)
}

/// Householder tridiagonalisation (tred2): Qᵀ A Q = T, T symmetric tridiagonal.
///
/// On entry `basis` holds Aᵀ (= A); on exit it holds Qᵀ (Q's columns as rows), `diagonal` holds T's
/// diagonal and `off_diagonal[i]` = T[i][i-1] for i ≥ 1 (`off_diagonal[0]` = 0). Reflections eliminate
/// row i's entries left of the subdiagonal, for i from n-1 down to 1; Q is accumulated afterwards.
fn householder_tridiagonalise(
    basis: &mut [f64],
    diagonal: &mut [f64],
    off_diagonal: &mut [f64],
    n: usize,
) {
    let (d, e, w) = (diagonal, off_diagonal, basis);
    // V[r][c] lives at w[c * n + r]; the comments name V as the EISPACK/JAMA code does.
    for j in 0..n {
        d[j] = w[j * n + n - 1]; // V[n-1][j]
    }
    for i in (1..n).rev() {
        // Scale row i (held in d[..i]) to avoid under/overflow in the reflection's norm.
        let scale: f64 = d[..i].iter().map(|x| x.abs()).sum();
        let mut h = 0.0;
        if scale == 0.0 {
            e[i] = d[i - 1];
            for j in 0..i {
                d[j] = w[j * n + i - 1]; // V[i-1][j]
                w[j * n + i] = 0.0; // V[i][j]
                w[i * n + j] = 0.0; // V[j][i]
            }
        } else {
            for x in &mut d[..i] {
                *x /= scale;
                h += *x * *x;
            }
            let mut f = d[i - 1];
            let mut g = if f > 0.0 { -h.sqrt() } else { h.sqrt() };
            e[i] = scale * g;
            h -= f * g;
            d[i - 1] = f - g;
            e[..i].fill(0.0);
            // p = A u / h, accumulated in e[..i] (the lower triangle, column by column).
            for j in 0..i {
                f = d[j];
                w[i * n + j] = f; // V[j][i]
                g = e[j] + w[j * n + j] * f;
                let column_below = &w[j * n + j + 1..j * n + i]; // V[j+1..i][j]
                for ((&v, &dk), ek) in column_below.iter().zip(&d[j + 1..i]).zip(&mut e[j + 1..i]) {
                    g += v * dk;
                    *ek += v * f;
                }
                e[j] = g;
            }
            // q = p − (uᵀp / 2h) u, then the rank-2 update A ← A − u qᵀ − q uᵀ.
            f = 0.0;
            for (ej, &dj) in e[..i].iter_mut().zip(&d[..i]) {
                *ej /= h;
                f += *ej * dj;
            }
            let hh = f / (h + h);
            for (ej, &dj) in e[..i].iter_mut().zip(&d[..i]) {
                *ej -= hh * dj;
            }
            for j in 0..i {
                f = d[j];
                g = e[j];
                let column = &mut w[j * n + j..j * n + i]; // V[j..i][j]
                for ((v, &ek), &dk) in column.iter_mut().zip(&e[j..i]).zip(&d[j..i]) {
                    *v -= f * ek + g * dk;
                }
                d[j] = w[j * n + i - 1]; // V[i-1][j]
                w[j * n + i] = 0.0; // V[i][j]
            }
        }
        d[i] = h;
    }
    // Accumulate the reflections into Q.
    for i in 0..n - 1 {
        w[i * n + n - 1] = w[i * n + i]; // V[n-1][i] = V[i][i]
        w[i * n + i] = 1.0;
        let h = d[i + 1];
        if h != 0.0 {
            for k in 0..=i {
                d[k] = w[(i + 1) * n + k] / h; // V[k][i+1] / h
            }
            for j in 0..=i {
                let (before, from_reflector) = w.split_at_mut((i + 1) * n);
                let reflector = &from_reflector[..=i]; // V[..=i][i+1]
                let column = &mut before[j * n..j * n + i + 1]; // V[..=i][j]
                let g: f64 = reflector
                    .iter()
                    .zip(column.iter())
                    .map(|(r, c)| r * c)
                    .sum();
                for (c, &dk) in column.iter_mut().zip(&d[..=i]) {
                    *c -= g * dk;
                }
            }
        }
        w[(i + 1) * n..(i + 1) * n + i + 1].fill(0.0); // V[..=i][i+1]
    }
    for j in 0..n {
        d[j] = w[j * n + n - 1]; // V[n-1][j]
        w[j * n + n - 1] = 0.0;
    }
    w[(n - 1) * n + n - 1] = 1.0;
    e[0] = 0.0;
}

/// Implicit QL iteration on a symmetric tridiagonal matrix (tql2), applying each plane rotation to the
/// basis so that basis rows become eigenvectors of the original matrix. On exit `diagonal` holds the
/// (unsorted) eigenvalues; `off_diagonal` is destroyed.
fn implicit_ql(basis: &mut [f64], diagonal: &mut [f64], off_diagonal: &mut [f64], n: usize) {
    // A generous cap; QL with these shifts converges in one to three iterations per eigenvalue in practice.
    const MAX_ITERATIONS_PER_EIGENVALUE: usize = 60;
    let (d, e, w) = (diagonal, off_diagonal, basis);
    for i in 1..n {
        e[i - 1] = e[i];
    }
    e[n - 1] = 0.0;
    let mut shift_total = 0.0;
    let mut scale = 0.0f64;
    for l in 0..n {
        // Find the first negligible subdiagonal element at or after l; the block l..=m is unreduced.
        scale = scale.max(d[l].abs() + e[l].abs());
        let mut m = l;
        while m < n - 1 && e[m].abs() > f64::EPSILON * scale {
            m += 1;
        }
        let mut iterations = 0;
        while m > l
            && e[l].abs() > f64::EPSILON * scale
            && iterations < MAX_ITERATIONS_PER_EIGENVALUE
        {
            iterations += 1;
            // Shift by the eigenvalue of the leading 2×2 closer to d[l].
            let mut g = d[l];
            let mut p = (d[l + 1] - g) / (2.0 * e[l]);
            let mut r = p.hypot(1.0);
            if p < 0.0 {
                r = -r;
            }
            d[l] = e[l] / (p + r);
            d[l + 1] = e[l] * (p + r);
            let dl1 = d[l + 1];
            let mut h = g - d[l];
            for x in &mut d[l + 2..n] {
                *x -= h;
            }
            shift_total += h;
            // Chase the bulge from m-1 up to l with plane rotations.
            p = d[m];
            let (mut c, mut c2, mut c3) = (1.0, 1.0, 1.0);
            let el1 = e[l + 1];
            let (mut s, mut s2) = (0.0, 0.0);
            for i in (l..m).rev() {
                c3 = c2;
                c2 = c;
                s2 = s;
                g = c * e[i];
                h = c * p;
                r = p.hypot(e[i]);
                e[i + 1] = s * r;
                s = e[i] / r;
                c = p / r;
                p = c * d[i] - s * g;
                d[i + 1] = h + s * (c * g + s * d[i]);
                let (head, tail) = w.split_at_mut((i + 1) * n);
                let vector_i = &mut head[i * n..];
                let vector_next = &mut tail[..n];
                for (vi, vn) in vector_i.iter_mut().zip(vector_next.iter_mut()) {
                    let old_next = *vn;
                    *vn = s * *vi + c * old_next;
                    *vi = c * *vi - s * old_next;
                }
            }
            p = -s * s2 * c3 * el1 * e[l] / dl1;
            e[l] = s * p;
            d[l] = c * p;
        }
        d[l] += shift_total;
        e[l] = 0.0;
    }
}

/// An orthonormal basis Q (rows×cols, row-major) of the column space of a rows×cols matrix A of full column
/// rank: A = Q R with R upper triangular, QᵀQ = I.
///
/// Modified Gram–Schmidt, each column orthogonalised twice against the earlier ones ("twice is enough":
/// QᵀQ = I to working precision even for ill-conditioned A). A column left with under 1e-12 of its norm
/// after that (A rank-deficient) comes back as zeros rather than as amplified rounding noise.
pub fn orthonormal_columns(a: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    const DEPENDENT_COLUMN: f64 = 1e-12;
    assert_eq!(
        a.len(),
        rows * cols,
        "orthonormal_columns: the matrix has {} entries, but rows×cols = {rows}×{cols}",
        a.len()
    );
    assert!(
        cols <= rows,
        "orthonormal_columns: {cols} columns cannot be independent in {rows} dimensions"
    );
    // Column-major working copy: column j is basis[j * rows..(j + 1) * rows].
    let mut basis = transpose(a, rows, cols);
    for j in 0..cols {
        let (done, rest) = basis.split_at_mut(j * rows);
        let column = &mut rest[..rows];
        let original_norm = dot(column, column).sqrt();
        for _pass in 0..2 {
            for earlier in done.chunks_exact(rows) {
                let projection = dot(earlier, column);
                for (x, &q) in column.iter_mut().zip(earlier) {
                    *x -= projection * q;
                }
            }
        }
        let remaining_norm = dot(column, column).sqrt();
        if remaining_norm <= DEPENDENT_COLUMN * original_norm {
            column.fill(0.0);
        } else {
            column.iter_mut().for_each(|x| *x /= remaining_norm);
        }
    }
    transpose(&basis, cols, rows)
}

/// The k principal angles θ₁ ≤ … ≤ θₖ (radians, in [0, π/2]) between the column spaces of two rows×k
/// matrices U and V (row-major; any bases, orthonormalised here by [`orthonormal_columns`]).
///
/// With Qu, Qv orthonormal bases, cos θᵢ are the singular values of Quᵀ Qv and sin θᵢ those of
/// (I − Qu Quᵀ) Qv, each σ = ‖M w‖ for an eigenvector w of the k×k Gram matrix MᵀM. acos loses half the digits
/// near 0 (cos θ = 1 − θ²/2), so an angle with sin θ < 0.5 is taken as asin of its sine, a larger one as
/// acos of its cosine.
pub fn principal_angles(u: &[f64], v: &[f64], rows: usize, k: usize) -> Vec<f64> {
    const SMALL_ANGLE_SINE: f64 = 0.5;
    assert_eq!(
        u.len(),
        rows * k,
        "principal_angles: u has {} entries, but rows×k = {rows}×{k}",
        u.len()
    );
    assert_eq!(
        v.len(),
        rows * k,
        "principal_angles: v has {} entries, but rows×k = {rows}×{k}",
        v.len()
    );
    let basis_u = orthonormal_columns(u, rows, k);
    let basis_v = orthonormal_columns(v, rows, k);
    // overlap = Quᵀ Qv (k×k); residual = Qv − Qu overlap = (I − Qu Quᵀ) Qv (rows×k).
    let mut overlap = vec![0.0; k * k];
    for row in 0..rows {
        let u_row = &basis_u[row * k..(row + 1) * k];
        let v_row = &basis_v[row * k..(row + 1) * k];
        for (i, &ui) in u_row.iter().enumerate() {
            for (o, &vj) in overlap[i * k..(i + 1) * k].iter_mut().zip(v_row) {
                *o += ui * vj;
            }
        }
    }
    let mut residual = basis_v.clone();
    for row in 0..rows {
        let u_row = &basis_u[row * k..(row + 1) * k];
        for (i, &ui) in u_row.iter().enumerate() {
            for (r, &o) in residual[row * k..(row + 1) * k]
                .iter_mut()
                .zip(&overlap[i * k..(i + 1) * k])
            {
                *r -= ui * o;
            }
        }
    }
    let cosines_descending = singular_values(&overlap, k, k);
    let sines_descending = singular_values(&residual, rows, k);
    // The i-th smallest angle has the i-th largest cosine and the i-th smallest sine.
    let mut angles: Vec<f64> = (0..k)
        .map(|i| {
            let sine = sines_descending[k - 1 - i].min(1.0);
            if sine < SMALL_ANGLE_SINE {
                sine.asin()
            } else {
                cosines_descending[i].clamp(0.0, 1.0).acos()
            }
        })
        .collect();
    angles.sort_by(f64::total_cmp);
    angles
}

/// Singular values of a rows×cols matrix M, descending: σᵢ = ‖M wᵢ‖ for the eigenvectors wᵢ of the
/// cols×cols Gram matrix MᵀM (its right singular vectors). Taking norms rather than √λ keeps a small σ
/// accurate to rounding of the largest one (√λ would only be good to √ε of it) wherever the wᵢ are
/// well separated.
fn singular_values(m: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    let mut gram = vec![0.0; cols * cols];
    for row in m.chunks_exact(cols).take(rows) {
        for (i, &mi) in row.iter().enumerate() {
            for (g, &mj) in gram[i * cols..(i + 1) * cols].iter_mut().zip(row) {
                *g += mi * mj;
            }
        }
    }
    let (_, right_vectors) = symmetric_eigen(&gram, cols);
    // ‖M wᵢ‖² summed row by row of M W.
    let mut squared_norms = vec![0.0; cols];
    let mut image_row = vec![0.0; cols];
    for row in m.chunks_exact(cols).take(rows) {
        image_row.fill(0.0);
        for (&mj, vector_row) in row.iter().zip(right_vectors.chunks_exact(cols)) {
            for (image, &w) in image_row.iter_mut().zip(vector_row) {
                *image += mj * w;
            }
        }
        for (norm, &image) in squared_norms.iter_mut().zip(&image_row) {
            *norm += image * image;
        }
    }
    let mut singular_values: Vec<f64> = squared_norms.into_iter().map(f64::sqrt).collect();
    singular_values.sort_by(|a, b| b.total_cmp(a));
    singular_values
}

/// Aᵀ of a rows×cols row-major A, as a cols×rows row-major matrix.
fn transpose(a: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    let mut transposed = vec![0.0; rows * cols];
    for row in 0..rows {
        for col in 0..cols {
            transposed[col * rows + row] = a[row * cols + col];
        }
    }
    transposed
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::FRAC_PI_2;

    /// SplitMix64, uniform in [-1, 1): enough randomness for test matrices, and no dependency.
    struct TestRng(u64);
    impl TestRng {
        fn uniform(&mut self) -> f64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        }
        fn matrix(&mut self, rows: usize, cols: usize) -> Vec<f64> {
            (0..rows * cols).map(|_| self.uniform()).collect()
        }
        fn symmetric(&mut self, n: usize) -> Vec<f64> {
            let mut a = vec![0.0; n * n];
            for i in 0..n {
                for j in 0..=i {
                    let x = self.uniform();
                    a[i * n + j] = x;
                    a[j * n + i] = x;
                }
            }
            a
        }
    }

    /// C = A B for row-major A (m×p) and B (p×q).
    fn matmul(a: &[f64], b: &[f64], m: usize, p: usize, q: usize) -> Vec<f64> {
        let mut c = vec![0.0; m * q];
        for i in 0..m {
            for l in 0..p {
                for j in 0..q {
                    c[i * q + j] += a[i * p + l] * b[l * q + j];
                }
            }
        }
        c
    }

    fn max_abs_difference(a: &[f64], b: &[f64]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    }

    fn identity(n: usize) -> Vec<f64> {
        let mut eye = vec![0.0; n * n];
        (0..n).for_each(|i| eye[i * n + i] = 1.0);
        eye
    }

    /// V diag(λ) Vᵀ.
    fn reassemble(eigenvalues: &[f64], eigenvectors: &[f64], n: usize) -> Vec<f64> {
        let mut scaled = eigenvectors.to_vec();
        for row in 0..n {
            for col in 0..n {
                scaled[row * n + col] *= eigenvalues[col];
            }
        }
        matmul(&scaled, &transpose(eigenvectors, n, n), n, n, n)
    }

    fn assert_is_eigen_decomposition(
        a: &[f64],
        n: usize,
        eigenvalues: &[f64],
        eigenvectors: &[f64],
    ) {
        let magnitude = a
            .iter()
            .fold(0.0f64, |m, x| m.max(x.abs()))
            .max(f64::MIN_POSITIVE);
        let reconstruction =
            max_abs_difference(&reassemble(eigenvalues, eigenvectors, n), a) / magnitude;
        assert!(
            reconstruction < 1e-10,
            "n = {n}: ‖A − VΛVᵀ‖/‖A‖ = {reconstruction:e}"
        );
        let gram = matmul(&transpose(eigenvectors, n, n), eigenvectors, n, n, n);
        let orthogonality = max_abs_difference(&gram, &identity(n));
        assert!(
            orthogonality < 1e-10,
            "n = {n}: ‖VᵀV − I‖ = {orthogonality:e}"
        );
        assert!(
            eigenvalues.windows(2).all(|w| w[0] >= w[1]),
            "n = {n}: not descending: {eigenvalues:?}"
        );
    }

    /// Cyclic Jacobi rotations: slow, simple and unrelated to tred2/tql2, so a fair reference.
    fn jacobi_eigenvalues(a: &[f64], n: usize) -> Vec<f64> {
        let mut m = a.to_vec();
        for _sweep in 0..100 {
            let off: f64 = (0..n)
                .flat_map(|i| (0..n).map(move |j| (i, j)))
                .filter(|(i, j)| i != j)
                .map(|(i, j)| m[i * n + j].powi(2))
                .sum();
            if off < 1e-30 {
                break;
            }
            for p in 0..n {
                for q in p + 1..n {
                    if m[p * n + q] == 0.0 {
                        continue;
                    }
                    let theta = (m[q * n + q] - m[p * n + p]) / (2.0 * m[p * n + q]);
                    let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                    let t = if theta == 0.0 { 1.0 } else { t };
                    let c = 1.0 / (t * t + 1.0).sqrt();
                    let s = t * c;
                    for k in 0..n {
                        let (mkp, mkq) = (m[k * n + p], m[k * n + q]);
                        m[k * n + p] = c * mkp - s * mkq;
                        m[k * n + q] = s * mkp + c * mkq;
                    }
                    for k in 0..n {
                        let (mpk, mqk) = (m[p * n + k], m[q * n + k]);
                        m[p * n + k] = c * mpk - s * mqk;
                        m[q * n + k] = s * mpk + c * mqk;
                    }
                }
            }
        }
        let mut eigenvalues: Vec<f64> = (0..n).map(|i| m[i * n + i]).collect();
        eigenvalues.sort_by(|x, y| y.total_cmp(x));
        eigenvalues
    }

    #[test]
    fn eigen_decomposition_reassembles_random_symmetric_matrices() {
        let mut rng = TestRng(1);
        for n in [1, 2, 5, 33, 200] {
            let a = rng.symmetric(n);
            let (eigenvalues, eigenvectors) = symmetric_eigen(&a, n);
            assert_is_eigen_decomposition(&a, n, &eigenvalues, &eigenvectors);
        }
    }

    #[test]
    fn eigen_decomposition_of_a_covariance_is_positive_semidefinite() {
        // XᵀX of a 40×30 X: rank 30, all eigenvalues ≥ 0, and their sum is the trace.
        let mut rng = TestRng(2);
        let (samples, n) = (40, 30);
        let x = rng.matrix(samples, n);
        let covariance = matmul(&transpose(&x, samples, n), &x, n, samples, n);
        let (eigenvalues, eigenvectors) = symmetric_eigen(&covariance, n);
        assert_is_eigen_decomposition(&covariance, n, &eigenvalues, &eigenvectors);
        assert!(
            eigenvalues[n - 1] > 0.0,
            "smallest eigenvalue {}",
            eigenvalues[n - 1]
        );
        let trace: f64 = (0..n).map(|i| covariance[i * n + i]).sum();
        assert!((eigenvalues.iter().sum::<f64>() - trace).abs() < 1e-10 * trace);
    }

    #[test]
    fn eigenvalues_match_a_jacobi_reference() {
        let mut rng = TestRng(3);
        for n in [3, 12, 25] {
            let a = rng.symmetric(n);
            let (eigenvalues, _) = symmetric_eigen(&a, n);
            let reference = jacobi_eigenvalues(&a, n);
            let difference = max_abs_difference(&eigenvalues, &reference);
            assert!(
                difference < 1e-12,
                "n = {n}: eigenvalues differ from Jacobi's by {difference:e}"
            );
        }
    }

    #[test]
    fn eigen_decomposition_of_a_known_two_by_two() {
        // [[2, 1], [1, 2]]: λ = 3 along (1, 1)/√2 and λ = 1 along (1, −1)/√2.
        let (eigenvalues, v) = symmetric_eigen(&[2.0, 1.0, 1.0, 2.0], 2);
        assert!(
            max_abs_difference(&eigenvalues, &[3.0, 1.0]) < 1e-15,
            "{eigenvalues:?}"
        );
        let half_sqrt2 = 0.5f64.sqrt();
        let first = [v[0], v[2]];
        let second = [v[1], v[3]];
        assert!(
            (dot(&first, &[half_sqrt2, half_sqrt2]).abs() - 1.0).abs() < 1e-15,
            "{first:?}"
        );
        assert!(
            (dot(&second, &[half_sqrt2, -half_sqrt2]).abs() - 1.0).abs() < 1e-15,
            "{second:?}"
        );
    }

    #[test]
    fn eigen_decomposition_of_a_diagonal_matrix_sorts_its_entries() {
        let entries = [3.0, -1.0, 7.0, 0.0];
        let mut a = vec![0.0; 16];
        (0..4).for_each(|i| a[i * 4 + i] = entries[i]);
        let (eigenvalues, v) = symmetric_eigen(&a, 4);
        assert_eq!(eigenvalues, vec![7.0, 3.0, 0.0, -1.0]);
        // Column j is ± the unit vector of the entry it came from.
        for (col, source_row) in [2, 0, 3, 1].into_iter().enumerate() {
            assert_eq!(v[source_row * 4 + col].abs(), 1.0, "column {col}");
        }
    }

    #[test]
    fn eigen_decomposition_with_a_repeated_eigenvalue() {
        // I + 4 u uᵀ with |u| = 1: λ = 5 once (along u) and 1 with multiplicity n − 1.
        let n = 9;
        let mut rng = TestRng(4);
        let mut u = rng.matrix(n, 1);
        let norm = dot(&u, &u).sqrt();
        u.iter_mut().for_each(|x| *x /= norm);
        let mut a = identity(n);
        for i in 0..n {
            for j in 0..n {
                a[i * n + j] += 4.0 * u[i] * u[j];
            }
        }
        let (eigenvalues, v) = symmetric_eigen(&a, n);
        assert_is_eigen_decomposition(&a, n, &eigenvalues, &v);
        let mut expected = vec![1.0; n];
        expected[0] = 5.0;
        assert!(
            max_abs_difference(&eigenvalues, &expected) < 1e-13,
            "{eigenvalues:?}"
        );
        let leading: Vec<f64> = (0..n).map(|row| v[row * n]).collect();
        assert!((dot(&leading, &u).abs() - 1.0).abs() < 1e-13);
    }

    #[test]
    fn eigen_decomposition_of_an_empty_matrix_is_empty() {
        assert_eq!(symmetric_eigen(&[], 0), (vec![], vec![]));
    }

    #[test]
    #[should_panic(expected = "finite")]
    fn eigen_decomposition_refuses_a_nan() {
        symmetric_eigen(&[1.0, f64::NAN, f64::NAN, 1.0], 2);
    }

    #[test]
    fn orthonormal_columns_span_the_input_and_are_orthonormal() {
        let mut rng = TestRng(5);
        let (rows, cols) = (30, 7);
        let a = rng.matrix(rows, cols);
        let q = orthonormal_columns(&a, rows, cols);
        let qt = transpose(&q, rows, cols);
        assert!(max_abs_difference(&matmul(&qt, &q, cols, rows, cols), &identity(cols)) < 1e-14);
        // A lies in span(Q): Q (Qᵀ A) = A.
        let projected = matmul(&q, &matmul(&qt, &a, cols, rows, cols), rows, cols, cols);
        assert!(max_abs_difference(&projected, &a) < 1e-13);
    }

    #[test]
    fn orthonormal_columns_stay_orthogonal_for_nearly_dependent_columns() {
        // Columns 1.. differ from column 0 by 1e-9: one pass of Gram–Schmidt would lose ~1e-7 of
        // orthogonality (ε·κ); the second pass restores it.
        let mut rng = TestRng(6);
        let (rows, cols) = (50, 6);
        let base = rng.matrix(rows, 1);
        let mut a = rng.matrix(rows, cols);
        for row in 0..rows {
            for col in 0..cols {
                a[row * cols + col] = base[row]
                    + if col == 0 {
                        0.0
                    } else {
                        1e-9 * a[row * cols + col]
                    };
            }
        }
        let q = orthonormal_columns(&a, rows, cols);
        let gram = matmul(&transpose(&q, rows, cols), &q, cols, rows, cols);
        let orthogonality = max_abs_difference(&gram, &identity(cols));
        assert!(orthogonality < 1e-14, "‖QᵀQ − I‖ = {orthogonality:e}");
    }

    #[test]
    fn orthonormal_columns_zero_a_dependent_column() {
        // Column 2 = column 0 + column 1.
        let a = [1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 2.0, 0.0, 0.0, 0.0];
        let q = orthonormal_columns(&a, 4, 3);
        assert!((0..4).all(|row| q[row * 3 + 2] == 0.0), "{q:?}");
    }

    #[test]
    fn principal_angles_of_a_subspace_with_itself_are_zero() {
        let mut rng = TestRng(7);
        let (rows, k) = (40, 5);
        let u = rng.matrix(rows, k);
        let change_of_basis = rng.matrix(k, k);
        let same_span = matmul(&u, &change_of_basis, rows, k, k);
        for v in [&u, &same_span] {
            let angles = principal_angles(&u, v, rows, k);
            assert!(angles.iter().all(|&theta| theta.abs() < 1e-7), "{angles:?}");
        }
    }

    #[test]
    fn principal_angles_of_a_known_rotation_in_three_dimensions() {
        // span{e1, e2} against span{e1, cos t e2 + sin t e3}: the angles are 0 and t, for tiny t too.
        for t in [1e-9, 1e-4, 0.3, 0.6, 1.2, FRAC_PI_2 - 1e-6] {
            let u = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0];
            let v = [1.0, 0.0, 0.0, t.cos(), 0.0, t.sin()];
            let angles = principal_angles(&u, &v, 3, 2);
            assert!(angles[0].abs() < 1e-15, "t = {t}: {angles:?}");
            assert!(
                (angles[1] - t).abs() < 1e-15 * t.max(1.0) + 1e-24,
                "t = {t}: {angles:?}"
            );
            assert!(
                (angles[1] - t).abs() / t < 1e-9,
                "t = {t}: relative error in {angles:?}"
            );
        }
    }

    #[test]
    fn principal_angles_keep_small_angles_accurate_beside_large_ones() {
        // u = [e1 … e4], vᵢ = cos tᵢ eᵢ + sin tᵢ e₄₊ᵢ in R⁸, both turned by one random rotation of R⁸ and
        // given random bases: the angles are the tᵢ. acos alone, or √ of the Gram eigenvalues, would get
        // the 1e-9 angle only to about 1e-8.
        let expected: [f64; 4] = [1e-9, 1e-5, 0.4, 1.3];
        let (rows, k) = (8, 4);
        let (mut u, mut v) = (vec![0.0; rows * k], vec![0.0; rows * k]);
        for (i, t) in expected.iter().enumerate() {
            u[i * k + i] = 1.0;
            v[i * k + i] = t.cos();
            v[(k + i) * k + i] = t.sin();
        }
        let mut rng = TestRng(10);
        let rotation = orthonormal_columns(&rng.matrix(rows, rows), rows, rows);
        let mut change_of_basis = rng.matrix(k, k);
        (0..k).for_each(|i| change_of_basis[i * k + i] += 3.0);
        let turn = |a: &[f64]| {
            matmul(
                &matmul(&rotation, a, rows, rows, k),
                &change_of_basis,
                rows,
                k,
                k,
            )
        };
        let angles = principal_angles(&turn(&u), &turn(&v), rows, k);
        for (angle, t) in angles.iter().zip(expected) {
            assert!(
                (angle - t).abs() < 1e-6 * t,
                "{angles:?} against {expected:?}"
            );
        }
    }

    #[test]
    fn principal_angles_of_orthogonal_subspaces_are_right_angles() {
        // span{e1, e2} against span{e3 + e4, e4 − e5} in R⁵.
        let u = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        let v = [0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, -1.0];
        let angles = principal_angles(&u, &v, 5, 2);
        assert!(
            max_abs_difference(&angles, &[FRAC_PI_2; 2]) < 1e-15,
            "{angles:?}"
        );
    }

    #[test]
    fn principal_angle_between_two_lines_is_the_angle_between_the_vectors() {
        let mut rng = TestRng(8);
        for _ in 0..20 {
            let (u, v) = (rng.matrix(20, 1), rng.matrix(20, 1));
            let cosine = dot(&u, &v).abs() / (dot(&u, &u) * dot(&v, &v)).sqrt();
            let angles = principal_angles(&u, &v, 20, 1);
            assert!(
                (angles[0] - cosine.acos()).abs() < 1e-12,
                "{angles:?} against {}",
                cosine.acos()
            );
        }
    }

    #[test]
    fn principal_angles_do_not_depend_on_the_choice_of_basis() {
        let mut rng = TestRng(9);
        let (rows, k) = (60, 6);
        let (u, v) = (rng.matrix(rows, k), rng.matrix(rows, k));
        let angles = principal_angles(&u, &v, rows, k);
        assert!(
            angles.windows(2).all(|w| w[0] <= w[1]),
            "not ascending: {angles:?}"
        );
        assert!(
            angles
                .iter()
                .all(|&theta| (0.0..=FRAC_PI_2).contains(&theta)),
            "{angles:?}"
        );
        // Random k×k changes of basis, made safely invertible by a dominant diagonal.
        let mut invertible = || {
            let mut g = rng.matrix(k, k);
            (0..k).for_each(|i| g[i * k + i] += 3.0);
            g
        };
        let (gu, gv) = (invertible(), invertible());
        let rebased = principal_angles(
            &matmul(&u, &gu, rows, k, k),
            &matmul(&v, &gv, rows, k, k),
            rows,
            k,
        );
        assert!(
            max_abs_difference(&angles, &rebased) < 1e-12,
            "{angles:?} against {rebased:?}"
        );
        // Swapping the two subspaces gives the same angles.
        let swapped = principal_angles(&v, &u, rows, k);
        assert!(
            max_abs_difference(&angles, &swapped) < 1e-12,
            "{angles:?} against {swapped:?}"
        );
    }
}
