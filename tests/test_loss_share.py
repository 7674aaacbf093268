"""benchmarks/loss_share.py's grouping and descent shares (synthetic)."""

import numpy as np


def test_groups_partition_the_examples_and_the_shares_sum_to_one(
    benchmark_script):
  loss_share = benchmark_script("loss_share")
  rng = np.random.default_rng(0)
  n = 40
  examples = {"cost": rng.uniform(0.01, 1.0, n),
              "grad": rng.normal(size=(n, 5)),
              "score": rng.uniform(size=n),
              "cold": rng.integers(0, 2, n),
              "first_lead": rng.integers(1, 18, n)}
  masks = loss_share.groups(examples, window=4, spinup=16)
  assert np.array_equal(sum(m.astype(int) for m in masks.values()),
                        np.ones(n, int))
  assert "true start, window from t = 17" in masks
  for relative in (False, True):
    shares = loss_share.descent_shares(examples, masks, relative)
    assert np.isclose(sum(shares.values()), 1.0)
  # Examples sharing one gradient direction share the descent by weight:
  # 1/cost each under the mean of log costs.
  examples["grad"] = np.ones((n, 5))
  examples["cold"] = np.arange(n) < n // 2
  examples["cost"] = np.where(examples["cold"], 1.0, 0.1)
  masks = loss_share.groups(examples, window=4, spinup=16)
  assert np.isclose(loss_share.descent_shares(examples, masks, False)
                    ["cold start"], 0.5)
  assert np.isclose(loss_share.descent_shares(examples, masks, True)
                    ["cold start"], 1 / 11, rtol=1e-4)
