"""Few-shot classification episodes built from scikit-learn's bundled 8×8 digits (offline, no download).

An episode draws ``n_way`` classes from a class pool and gives them random labels 0 … n_way−1; it
presents ``k_shot`` training images per class one at a time in random order (the online *support*
stream), then ``n_query`` different images per class to score the network (the *query* set).
"""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray

from .._errors import DataError, ModelError

DIGIT_CLASSES: tuple[int, ...] = tuple(range(10))
DEFAULT_HELDOUT_CLASSES: tuple[int, ...] = (5, 6, 7, 8, 9)


class Episode(eqx.Module):
    """One few-shot task: an online support stream and a query set with labels 0 … n_way−1."""

    support_x: Float[Array, "n_support pixels"]
    support_y: Int[Array, " n_support"]
    query_x: Float[Array, "n_query pixels"]
    query_y: Int[Array, " n_query"]


class DigitsEpisodes(eqx.Module):
    """A sampler of few-shot episodes over a fixed pool of digit classes.

    Build with :meth:`from_digits`. ``sample(key)`` is a pure function of the key (jit- and vmap-able).

    Attributes:
        images: the pool's images, padded per class, shape (classes, slots, 64), pixels in [0, 1].
        counts: real images per class (the rest of each row is padding, never drawn).
        classes: the digit of each row of ``images``.
    """

    images: Float[Array, "classes slots pixels"]
    counts: Int[Array, " classes"]
    classes: tuple[int, ...] = eqx.field(static=True)
    n_way: int = eqx.field(static=True)
    k_shot: int = eqx.field(static=True)
    n_query: int = eqx.field(static=True)

    def __check_init__(self):
        if self.n_way < 2:
            raise ModelError(f"n_way must be at least 2, got {self.n_way}")
        if self.n_way > len(self.classes):
            raise ModelError(
                f"n_way = {self.n_way} but the class pool {self.classes} has only {len(self.classes)} classes"
            )
        if self.k_shot < 1 or self.n_query < 1:
            raise ModelError(f"k_shot and n_query must be ≥ 1, got {self.k_shot} and {self.n_query}")
        fewest = int(np.min(np.asarray(self.counts)))
        if self.k_shot + self.n_query > fewest:
            raise ModelError(
                f"k_shot + n_query = {self.k_shot + self.n_query} exceeds the {fewest} images of the smallest class"
            )

    @classmethod
    def from_digits(
        cls,
        classes: Sequence[int] = (0, 1, 2, 3, 4),
        *,
        n_way: int = 5,
        k_shot: int = 10,
        n_query: int = 10,
        dtype=jnp.float32,
    ) -> "DigitsEpisodes":
        """Episodes over the given digits, from ``sklearn.datasets.load_digits`` scaled to [0, 1]."""
        from sklearn.datasets import load_digits

        classes = tuple(int(c) for c in classes)
        bad = [c for c in classes if c not in DIGIT_CLASSES]
        if bad or len(set(classes)) != len(classes):
            raise DataError(f"classes must be distinct digits 0–9; got {classes}")
        digits = load_digits()
        data = np.asarray(digits.data, dtype=np.float64) / 16.0
        target = np.asarray(digits.target)
        rows = [data[target == c] for c in classes]
        slots = max(len(r) for r in rows)
        images = np.zeros((len(classes), slots, data.shape[1]))
        for i, r in enumerate(rows):
            images[i, : len(r)] = r
        counts = np.asarray([len(r) for r in rows], dtype=np.int32)
        return cls(jnp.asarray(images, dtype=dtype), jnp.asarray(counts), classes, int(n_way), int(k_shot), int(n_query))

    @property
    def n_support(self) -> int:
        return self.n_way * self.k_shot

    @property
    def n_pixels(self) -> int:
        return self.images.shape[-1]

    @property
    def dtype(self):
        return self.images.dtype

    def with_sizes(self, *, n_way: int | None = None, k_shot: int | None = None, n_query: int | None = None):
        """The same pool with other episode sizes."""
        return DigitsEpisodes(
            self.images,
            self.counts,
            self.classes,
            self.n_way if n_way is None else n_way,
            self.k_shot if k_shot is None else k_shot,
            self.n_query if n_query is None else n_query,
        )

    def sample(self, key: PRNGKeyArray) -> Episode:
        """Draw one episode: classes, their label assignment, images, and the presentation order."""
        # One draw of random bits for everything (a single RNG op compiles much faster than several);
        # argsort of independent 31-bit values is a uniformly random permutation (ties ~ n²/2³²).
        n_cls, slots = len(self.classes), self.images.shape[1]
        n_take = self.k_shot + self.n_query
        n_sup, n_qry = self.n_way * self.k_shot, self.n_way * self.n_query
        sizes = (n_cls, self.n_way * slots, n_sup, n_qry)
        bits = jax.random.bits(key, (sum(sizes),), jnp.uint32) >> 1
        b_cls, b_img, b_order, b_qorder = jnp.split(bits, np.cumsum(sizes)[:-1])
        chosen = jnp.argsort(b_cls)[: self.n_way]  # label i ↔ class chosen[i]
        real = jnp.arange(slots, dtype=self.counts.dtype)[None, :] < self.counts[chosen][:, None]
        score = jnp.where(real, b_img.reshape(self.n_way, slots), jnp.uint32(2**31))  # padding sorts last
        idx = jnp.argsort(score, axis=1)[:, :n_take]  # (n_way, n_take) distinct images per class
        imgs = self.images[chosen[:, None], idx]  # (n_way, n_take, pixels)
        labels = jnp.broadcast_to(jnp.arange(self.n_way)[:, None], (self.n_way, n_take))
        sx = imgs[:, : self.k_shot].reshape(-1, self.n_pixels)
        sy = labels[:, : self.k_shot].reshape(-1)
        qx = imgs[:, self.k_shot :].reshape(-1, self.n_pixels)
        qy = labels[:, self.k_shot :].reshape(-1)
        order, qorder = jnp.argsort(b_order), jnp.argsort(b_qorder)
        return Episode(sx[order], sy[order], qx[qorder], qy[qorder])


def digits_split(
    heldout_classes: Sequence[int] = DEFAULT_HELDOUT_CLASSES,
    *,
    n_way: int = 5,
    k_shot: int = 10,
    n_query: int = 10,
    dtype=jnp.float32,
) -> tuple[DigitsEpisodes, DigitsEpisodes]:
    """(meta-training episodes, held-out episodes): the digits not in ``heldout_classes`` vs those in it.

    With 10 digits and ``n_way = 5``, the default holds out 5–9 and meta-trains on 0–4; every
    meta-training episode then uses all five training digits, under a fresh random label assignment,
    so the rule cannot memorise which output means which digit.
    """
    heldout = tuple(int(c) for c in heldout_classes)
    bad = [c for c in heldout if c not in DIGIT_CLASSES]
    if bad:
        raise DataError(f"held-out classes must be digits 0–9; got {heldout}")
    train = tuple(c for c in DIGIT_CLASSES if c not in heldout)
    for name, pool in (("meta-training", train), ("held-out", heldout)):
        if len(pool) < n_way:
            raise ModelError(
                f"the {name} pool {pool} has {len(pool)} classes, fewer than n_way = {n_way}; "
                "hold out fewer classes or lower n_way"
            )
    kw = dict(n_way=n_way, k_shot=k_shot, n_query=n_query, dtype=dtype)
    return DigitsEpisodes.from_digits(train, **kw), DigitsEpisodes.from_digits(heldout, **kw)
