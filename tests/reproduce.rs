//! The 1-D experiments of the paper (Tables 1, 3, 6): gradients, the feature-map similarity,
//! determinism, the paper's qualitative claims, and the JSON rows.

use cs_init::reproduce::{
    run_episodes, window_gram, Objective, Optimizer, Protocol, RowSetup, Similarity, Table,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn uniform(n: usize, lo: f64, hi: f64, rng: &mut StdRng) -> Vec<f64> {
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

/// Central finite differences of an objective against its analytic gradient, for every kernel
/// size of the paper and a few edge sizes.
#[test]
fn gradients_match_finite_differences() {
    let mut rng = StdRng::seed_from_u64(1);
    for objective in [Objective::KernelSimilarity, Objective::ConvSimilarity] {
        for n in [1, 2, 3, 9, 16] {
            let k = uniform(2 * n, -1.0, 1.0, &mut rng);
            let (k1, k2) = k.split_at(n);
            let (mut g1, mut g2) = (vec![0.0; n], vec![0.0; n]);
            objective.evaluate(k1, k2, &mut g1, &mut g2);
            let analytic: Vec<f64> = g1.iter().chain(&g2).copied().collect();
            let value = |k: &[f64]| {
                let (mut s1, mut s2) = (vec![0.0; n], vec![0.0; n]);
                objective.evaluate(&k[..n], &k[n..], &mut s1, &mut s2)
            };
            let h = 1e-5;
            for (i, &g) in analytic.iter().enumerate() {
                let (mut plus, mut minus) = (k.clone(), k.clone());
                plus[i] += h;
                minus[i] -= h;
                let numeric = (value(&plus) - value(&minus)) / (2.0 * h);
                let scale = analytic.iter().map(|g| g.abs()).fold(1.0, f64::max);
                assert!(
                    (numeric - g).abs() <= 1e-7 * scale,
                    "{objective:?} N={n} coordinate {i}: analytic {g}, numeric {numeric}"
                );
            }
        }
    }
}

/// `||K1 ⊛ K2||²` from its definition: the full cross-correlation, squared and summed.
#[test]
fn conv_similarity_is_the_squared_cross_correlation() {
    let mut rng = StdRng::seed_from_u64(2);
    for n in [1, 2, 5, 16] {
        let (k1, k2) = (
            uniform(n, -1.0, 1.0, &mut rng),
            uniform(n, -1.0, 1.0, &mut rng),
        );
        let mut literal = 0.0;
        for shift in -(n as isize - 1)..n as isize {
            let c: f64 = (0..n as isize)
                .filter(|p| (0..n as isize).contains(&(p + shift)))
                .map(|p| k1[p as usize] * k2[(p + shift) as usize])
                .sum();
            literal += c * c;
        }
        let (mut g1, mut g2) = (vec![0.0; n], vec![0.0; n]);
        let value = Objective::ConvSimilarity.evaluate(&k1, &k2, &mut g1, &mut g2);
        assert!((value - literal).abs() <= 1e-12 * literal, "N={n}");
    }
}

/// Zero-padded cross-correlation `(K ⊛ X)[o] = sum_p K[p] X̃[o+p]`, computed directly.
fn feature_map(x: &[f64], k: &[f64], pad: usize) -> Vec<f64> {
    let padded: Vec<f64> = std::iter::repeat_n(0.0, pad)
        .chain(x.iter().copied())
        .chain(std::iter::repeat_n(0.0, pad))
        .collect();
    padded
        .windows(k.len())
        .map(|w| w.iter().zip(k).map(|(a, b)| a * b).sum())
        .collect()
}

/// The Gram-matrix shortcut gives the similarity of the feature maps themselves, for full and
/// valid padding, every similarity.
#[test]
fn similarity_equals_that_of_the_feature_maps() {
    let mut rng = StdRng::seed_from_u64(3);
    for n in [2, 9, 16] {
        let x = uniform(64, 0.0, 1.0, &mut rng);
        let (k1, k2) = (
            uniform(n, -1.0, 1.0, &mut rng),
            uniform(n, -1.0, 1.0, &mut rng),
        );
        for pad in [n - 1, 0] {
            let (f1, f2) = (feature_map(&x, &k1, pad), feature_map(&x, &k2, pad));
            assert_eq!(f1.len(), 64 + 2 * pad - n + 1);
            let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(p, q)| p * q).sum::<f64>();
            let inner = dot(&f1, &f2);
            let cosine = inner / (dot(&f1, &f1) * dot(&f2, &f2)).sqrt();
            let gram = window_gram(&x, n, pad);
            let ours = Similarity::Inner.measure(&k1, &k2, &gram);
            let scale = (dot(&f1, &f1) * dot(&f2, &f2)).sqrt();
            assert!((ours - inner).abs() <= 1e-12 * scale, "N={n} pad={pad}");
            let ours = Similarity::Cosine.measure(&k1, &k2, &gram);
            assert!((ours - cosine).abs() <= 1e-12, "N={n} pad={pad}");
            let ours = Similarity::Squared.measure(&k1, &k2, &gram);
            assert!(
                (ours - inner * inner).abs() <= 1e-12 * scale * scale,
                "N={n} pad={pad}"
            );
        }
    }
}

fn setup(seed: u64) -> RowSetup {
    RowSetup {
        n: 9,
        objective: Objective::ConvSimilarity,
        pad: 8,
        similarity: Similarity::Inner,
        optimizer: Optimizer::Adam,
        lr: 0.1,
        iterations: 50,
        episodes: 20,
        seed,
    }
}

#[test]
fn deterministic_for_a_seed() {
    assert_eq!(run_episodes(&setup(7)), run_episodes(&setup(7)));
    assert_ne!(run_episodes(&setup(7)), run_episodes(&setup(8)));
    let settings = Protocol {
        episodes: 10,
        seed: 3,
        ..Protocol::default()
    };
    assert_eq!(Table::Table6.run(&settings), Table::Table6.run(&settings));
}

/// Episodes of one setting are independent: a batch of 20 gives the same episodes as the first 20
/// of a batch of 40.
#[test]
fn episodes_do_not_interact() {
    let small = run_episodes(&setup(5));
    let large = run_episodes(&RowSetup {
        episodes: 40,
        ..setup(5)
    });
    assert_eq!(small[..], large[..20]);
}

/// The paper's claims, checked on 300 episodes per row: minimizing L_CS lowers the feature-map
/// similarity in (nearly) every episode, and its correlation with the similarity is higher than
/// that of the kernel similarity, for every kernel size and optimizer.
#[test]
fn qualitative_claims_hold() {
    let settings = Protocol {
        episodes: 300,
        ..Protocol::default()
    };
    let kernel = Table::Table1.run(&settings);
    let conv = Table::Table3.run(&settings);
    for (k, c) in kernel.iter().zip(&conv) {
        assert_eq!((k.n, k.optimizer), (c.n, c.optimizer));
        assert!(
            c.ours.reduction_frequency >= 98.0,
            "L_CS, N={} {:?}: reduction frequency {}",
            c.n,
            c.optimizer,
            c.ours.reduction_frequency
        );
        assert!(
            c.ours.corr_mean > k.ours.corr_mean,
            "N={} {:?}: correlation {} with L_CS, {} with kernel similarity",
            c.n,
            c.optimizer,
            c.ours.corr_mean,
            k.ours.corr_mean
        );
        assert!(k.ours.reduction_frequency < c.ours.reduction_frequency);
    }
}

#[test]
fn json_rows_have_exactly_the_documented_keys() {
    let settings = Protocol {
        episodes: 5,
        ..Protocol::default()
    };
    let figures = [
        "corr_mean",
        "corr_std",
        "reduction_frequency",
        "decrease_mean",
        "decrease_std",
        "increase_mean",
        "increase_std",
    ];
    let mut top: Vec<&str> = ["table", "n", "optimizer", "paper"].to_vec();
    top.extend(figures);
    top.sort_unstable();
    let mut paper_keys = figures.to_vec();
    paper_keys.sort_unstable();
    for table in Table::ALL {
        for row in table.run(&settings) {
            let json = serde_json::to_value(row).unwrap();
            let keys = |v: &serde_json::Value| {
                let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
                k.sort_unstable();
                k
            };
            assert_eq!(keys(&json), top);
            assert_eq!(keys(&json["paper"]), paper_keys);
            assert_eq!(json["table"], table.name());
            assert!(json["optimizer"] == "adam" || json["optimizer"] == "sgd");
            assert_eq!(json["paper"]["corr_mean"], row.paper.corr_mean);
        }
    }
}

/// Every table has the paper's six rows, N = 2, 9, 16, each with Adam then SGD.
#[test]
fn tables_have_the_papers_rows() {
    for table in Table::ALL {
        let rows: Vec<(usize, Optimizer)> = table
            .paper_rows()
            .iter()
            .map(|r| (r.n, r.optimizer))
            .collect();
        assert_eq!(
            rows,
            [2, 2, 9, 9, 16, 16]
                .into_iter()
                .zip([Optimizer::Adam, Optimizer::Sgd].into_iter().cycle())
                .collect::<Vec<_>>()
        );
    }
}
