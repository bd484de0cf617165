"""MGRAL (mAP-guided reinforced active learning): an LSTM sampling agent trained by policy gradient.

One cycle, after the plain detector of the cycle is trained (same recipe as the baselines):

1. ``embeddings``: every pool image as a 256-d vector (pooled FPN features, PCA fitted on the pool).
2. ``proxy``: a semi-supervised proxy detector, warm-started from the cycle's detector, trained on
   the labeled set plus a candidate batch without its labels (the detector's pseudo labels); its
   mAP@0.5 on a held-out part of the labeled set (never the test split) rates the batch.
3. ``lookup``: R records (random candidate batch -> proxy mAP) form the lookup table; the reward of
   any batch is the inverse-Wasserstein-distance weighted mAP of its nearest records, or a real
   proxy run (added to the table) when it lies beyond the table's threshold.
4. ``agent``: ``torch.nn.LSTM`` over the unlabeled pool (embedding + previous score), a 2-layer MLP
   decoder, REINFORCE with a moving-average baseline; sampled batches (Gumbel-top-k, Plackett-Luce
   log-likelihood) in training, the deterministic top-b at selection.
"""
