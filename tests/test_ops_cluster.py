"""DPC-kNN centres and cluster merge (algorithm §4c)."""

from __future__ import annotations

import math

import pytest
import torch
from reference_loops import loop_dpc_knn

from lmms_holitom.ops import cluster_merge, dpc_knn_centres, dpc_knn_merge, pairwise_distance
from lmms_holitom.ops.cluster import dpc_knn_ragged

# Six points on a line (E = 1, so dist = |xi - xj| exactly): a tight group 0,1,2, a pair 50,51 and an
# outlier 100. With k = 2 the density is exp(-(0 + nn^2) / 2): points 0..4 tie at exp(-1/2) and the
# outlier has ~0. Ties in density go to the lower index: point 0 is the densest (delta = max dist = 100),
# delta(1) = 1, delta(2) = 1, delta(3) = 48 (to point 2), delta(4) = 1, delta(5) = 49.
LINE = torch.tensor([[0.0], [1.0], [2.0], [50.0], [51.0], [100.0]])


def test_centres_on_a_line_by_hand():
    assert dpc_knn_centres(LINE, 2, 2).tolist() == [0, 3]
    # the next score is a three-way tie (points 1, 2, 4: density exp(-1/2), delta 1): lowest index wins
    assert dpc_knn_centres(LINE, 3, 2).tolist() == [0, 1, 3]
    assert dpc_knn_centres(LINE, 6, 2).tolist() == [0, 1, 2, 3, 4, 5]
    assert dpc_knn_centres(LINE, 0, 2).tolist() == []


def test_merge_on_a_line_by_hand():
    # centres 0 and 3: 1, 2 -> centre 0 (distances 1, 2 vs 49, 48); 4, 5 -> centre 3 (1 and 50 < 100)
    tokens, centres = dpc_knn_merge(LINE, 2, 2, beta=0.6, beta_merge=True)
    assert centres.tolist() == [0, 3]
    torch.testing.assert_close(tokens, torch.tensor([[0.4 * 1.5], [0.6 * 50 + 0.4 * 75.5]]))
    tokens, _ = dpc_knn_merge(LINE, 2, 2, beta=0.6, beta_merge=False)
    torch.testing.assert_close(tokens, torch.tensor([[1.0], [67.0]]))  # mean(0,1,2), mean(50,51,100)
    # three centres 0, 1, 3: point 2 is nearer to 1 than to 0; centre 0 has no member and stays
    tokens, centres = dpc_knn_merge(LINE, 3, 2, beta=0.5, beta_merge=True)
    assert centres.tolist() == [0, 1, 3]
    torch.testing.assert_close(tokens, torch.tensor([[0.0], [0.5 * 1 + 0.5 * 2], [0.5 * 50 + 0.5 * 75.5]]))


def test_centres_of_three_blobs_in_2d():
    # three plus-shaped blobs; the middle point of each blob is its densest point
    blobs = []
    for cx, cy in [(0.0, 0.0), (20.0, 0.0), (0.0, 20.0)]:
        blobs += [(cx, cy), (cx + 1, cy), (cx - 1, cy), (cx, cy + 1), (cx, cy - 1)]
    x = torch.tensor(blobs)
    centres = dpc_knn_centres(x, 3, 3)
    assert centres.tolist() == [0, 5, 10]
    tokens = cluster_merge(x, centres, beta=0.6)
    # members are symmetric around each centre: their mean is the centre itself
    torch.testing.assert_close(tokens, x[[0, 5, 10]])


def test_duplicates_go_to_the_lower_index():
    # two pairs of duplicates: equal densities (nn distance 0); the lower index of each pair ranks above
    # the higher, so the higher gets delta = 0 and is never picked before its twin
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    assert dpc_knn_centres(x, 2, 2).tolist() == [0, 2]
    tokens = cluster_merge(x, torch.tensor([0, 2]), beta=0.6)
    torch.testing.assert_close(tokens, x[[0, 2]])
    same = torch.ones(5, 3)
    assert dpc_knn_centres(same, 2, 3).tolist() == [0, 1]


def test_distance_is_exactly_symmetric():
    # a plain x @ x.T is not bit-symmetric for some shapes (e.g. small E on CPU), which would turn
    # exact density ties (mutual nearest neighbours) into rounding-decided ones
    gen = torch.Generator().manual_seed(0)
    for n in (2, 5, 9, 17, 31, 50):
        for E in (3, 6, 8, 33, 128):
            x = torch.randn(n, E, generator=gen)
            for dist in (pairwise_distance(x.unsqueeze(0))[0], pairwise_distance(x, [n])[0]):
                assert torch.equal(dist, dist.T), (n, E)


def test_mutual_nearest_neighbours_tie_exactly():
    # with k = 2 the density is exp(-d_nn^2 / 2): two mutual nearest neighbours tie exactly. Plant the
    # closest pair of a set at rows 7 and 3: it holds the densest tokens, so with one centre the lower
    # index of the pair must win, whatever the rounding of the Gram matrix (the distances are exactly
    # symmetric)
    for seed in range(30):
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(40, 64, generator=gen) * 30 + 50
        x[7] = x[3] + 0.05 * torch.randn(64, generator=gen)
        for dist in (pairwise_distance(x.unsqueeze(0))[0], pairwise_distance(x, [40])[0]):  # bmm, mm
            assert torch.equal(dist, dist.T)
        assert dpc_knn_centres(x, 1, 2).tolist() == [3]
        # the ragged engine (one matmul per set) used by compress_video, with a second set beside it
        _, rows = dpc_knn_ragged(torch.cat([x, x[:9]]), [40, 9], [1, 2], [2, 2], 0.6, True)
        assert rows.tolist()[0] == 3


def test_equidistant_member_joins_the_lower_index_centre():
    x = torch.tensor([[0.0], [2.0], [4.0]])  # point 1 is at distance 2 from both centres
    tokens = cluster_merge(x, torch.tensor([0, 2]), beta=0.5)
    torch.testing.assert_close(tokens, torch.tensor([[1.0], [4.0]]))


def test_distance_has_exact_zero_diagonal_and_is_scaled():
    x = torch.randn(40, 64, generator=torch.Generator().manual_seed(0)) * 30  # cdist's matmul path
    dist = pairwise_distance(x.unsqueeze(0))[0]
    assert dist.dtype == torch.float32
    assert torch.all(dist.diagonal() == 0)
    torch.testing.assert_close(dist[3, 7], (x[3] - x[7]).norm() / math.sqrt(64), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("beta_merge", [True, False])
@pytest.mark.parametrize(("n", "clusters", "k"), [(9, 3, 3), (16, 5, 5), (30, 7, 7), (12, 11, 7), (8, 1, 1)])
def test_matches_loop_oracle_on_random_sets(n, clusters, k, beta_merge):
    gen = torch.Generator().manual_seed(n * 100 + clusters)
    x = torch.randn(3, n, 12, generator=gen)
    tokens, centres = dpc_knn_merge(x, clusters, k, beta=0.6, beta_merge=beta_merge)
    assert tokens.shape == (3, clusters, 12) and centres.shape == (3, clusters)
    for b in range(3):
        ref_centres, ref_tokens = loop_dpc_knn(x[b], clusters, k, 0.6, beta_merge)
        assert centres[b].tolist() == ref_centres
        torch.testing.assert_close(tokens[b], ref_tokens, rtol=1e-6, atol=1e-6)
        # a batch of one set gives the same as the batch
        single_tokens, single_centres = dpc_knn_merge(x[b], clusters, k, beta=0.6, beta_merge=beta_merge)
        assert torch.equal(single_centres, centres[b])
        torch.testing.assert_close(single_tokens, tokens[b], rtol=1e-6, atol=1e-6)


def test_cluster_merge_recomputes_distance_when_not_given():
    x = torch.randn(20, 8, generator=torch.Generator().manual_seed(4))
    centres = dpc_knn_centres(x, 4, 4)
    with_dist = cluster_merge(x, centres, beta=0.3, dist=pairwise_distance(x.unsqueeze(0)))
    torch.testing.assert_close(cluster_merge(x, centres, beta=0.3), with_dist)


def test_all_centres_is_identity():
    x = torch.randn(2, 7, 5)
    tokens, centres = dpc_knn_merge(x, 7, 3)
    assert torch.equal(tokens, x)
    assert centres.tolist() == [list(range(7))] * 2


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_input(dtype):
    x = torch.randn(25, 32, generator=torch.Generator().manual_seed(6))
    ref_tokens, ref_centres = dpc_knn_merge(x, 6, 6)
    tokens, centres = dpc_knn_merge(x.to(dtype), 6, 6)
    assert tokens.dtype == dtype
    assert centres.tolist() == ref_centres.tolist()
    torch.testing.assert_close(tokens.float(), ref_tokens, atol=3e-2, rtol=3e-2)


def test_deterministic():
    x = torch.randn(50, 16, generator=torch.Generator().manual_seed(8))
    a = dpc_knn_merge(x, 9, 7)
    b = dpc_knn_merge(x, 9, 7)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: dpc_knn_centres(torch.randn(5), 1, 1), "x must be a floating"),
        (lambda: dpc_knn_centres(torch.ones(5, 2, dtype=torch.long), 1, 1), "x must be a floating"),
        (lambda: dpc_knn_centres(torch.randn(5, 2), 6, 1), "clusters must be <= 5"),
        (lambda: dpc_knn_centres(torch.randn(5, 2), -1, 1), "clusters must be >= 0"),
        (lambda: dpc_knn_centres(torch.randn(5, 2), 2, 0), "k must be >= 1"),
        (lambda: dpc_knn_centres(torch.randn(5, 2), 2, 6), "k must be <= 5"),
        (lambda: cluster_merge(torch.randn(5, 2), torch.tensor([3, 1])), "centres must be strictly increasing"),
        (lambda: cluster_merge(torch.randn(5, 2), torch.tensor([1, 5])), "centres must be strictly increasing"),
        (lambda: cluster_merge(torch.randn(5, 2), torch.tensor([1.0])), "centres must be a long"),
        (lambda: cluster_merge(torch.randn(5, 2), torch.tensor([1]), beta=1.5), "beta must be in"),
        (lambda: cluster_merge(torch.randn(5, 2), torch.tensor([1]), dist=torch.zeros(1, 4, 4)), "dist must"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("weighted", [False, True])
def test_group_sum_paths_agree(monkeypatch, weighted):
    import lmms_holitom.ops.cluster as cluster

    gen = torch.Generator().manual_seed(10)
    values = torch.randn(20, 7, generator=gen)
    group = torch.randint(0, 5, (20,), generator=gen)
    weight = torch.rand(20, generator=gen) if weighted else None
    expected = torch.zeros(5, 7)
    for j in range(20):
        expected[group[j]] += values[j] * (1.0 if weight is None else weight[j])
    torch.testing.assert_close(cluster.group_sum(values, group, 5, weight), expected, rtol=1e-6, atol=1e-6)
    # the accelerator path (one-hot GEMM instead of index_add_), forced on the CPU
    monkeypatch.setattr(cluster, "_use_index_add", lambda device: False)
    torch.testing.assert_close(cluster.group_sum(values, group, 5, weight), expected, rtol=1e-6, atol=1e-6)


def test_merge_through_the_gemm_path_matches_oracle(monkeypatch):
    import lmms_holitom.ops.cluster as cluster

    monkeypatch.setattr(cluster, "_use_index_add", lambda device: False)
    x = torch.randn(2, 18, 9, generator=torch.Generator().manual_seed(11))
    tokens, centres = dpc_knn_merge(x, 5, 5, beta=0.6)
    for b in range(2):
        ref_centres, ref_tokens = loop_dpc_knn(x[b], 5, 5, 0.6, True)
        assert centres[b].tolist() == ref_centres
        torch.testing.assert_close(tokens[b], ref_tokens, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("beta_merge", [True, False])
def test_ragged_batch_equals_set_by_set(beta_merge):
    gen = torch.Generator().manual_seed(16)
    sizes, clusters, ks = [5, 12, 30, 1, 8], [2, 5, 7, 1, 8], [2, 5, 7, 1, 3]
    sets = [torch.randn(s, 10, generator=gen) for s in sizes]
    tokens, rows = dpc_knn_ragged(torch.cat(sets), sizes, clusters, ks, 0.6, beta_merge)
    assert tokens.shape == (sum(clusters), 10)
    start = row0 = 0
    for x, s, c, k in zip(sets, sizes, clusters, ks):
        ref_tokens, ref_centres = dpc_knn_merge(x, c, k, beta=0.6, beta_merge=beta_merge)
        assert (rows[start : start + c] - row0).tolist() == ref_centres.tolist()
        torch.testing.assert_close(tokens[start : start + c], ref_tokens, rtol=1e-6, atol=1e-6)
        oracle_centres, _ = loop_dpc_knn(x, c, k, 0.6, beta_merge)
        assert ref_centres.tolist() == oracle_centres
        start, row0 = start + c, row0 + s
