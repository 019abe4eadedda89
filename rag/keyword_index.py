"""The keyword (BM25) side of hybrid retrieval: one persisted index per knowledge base.

Vector search misses exact terms (product codes, room names, numbers) and m3e-small is weak on them, so
kbqa also keeps a BM25 index: text is folded (Simplified script, half-width letters:
``rag.chinese_text``) and segmented with jieba (search mode, so 会议室 also yields 会议), Latin text split
into lower-case words; stop words are dropped. The index is built from the chunks in Chroma — the one
source of truth — saved under ``data/keyword/<kb>/`` and rebuilt whenever ingestion changes the
knowledge base; a query only loads it (once, and again when another process rebuilt it). If its chunk
count ever disagrees with Chroma's (a run killed between the two writes), the next query rebuilds it,
so it cannot stay stale.

Queries check freshness cheaply: two ``stat`` calls per query (the state file, whose inode and mtime
change with every rebuild's atomic swap, and the stale marker), and Chroma's chunk count at most once
every ``RECOUNT_S`` seconds. Reading ``state.json`` and counting on every query cost ~25 ms at 100k
chunks, twice per question with translation on; a rebuild or a stale mark is still seen by the very
next query, a count drift without a mark (nothing kbqa writes does that) within ``RECOUNT_S``.

Exact vectors: for a knowledge base of at most ``vector_limit`` chunks the snapshot also holds every
chunk's embedding (``vectors.npy``, memory-mapped), so vector search can be exact instead of Chroma's
approximate HNSW. Measured on the 190-chunk evaluation set, HNSW missed a true top-20 neighbour for
0-3 of 120 questions, a different few in each process (no HNSW setting removed it); a product that
answers the same question differently after a restart is hard to trust and harder to evaluate. A
matrix product over 20k chunks costs a few milliseconds, less than embedding the question. The copy
shares the index's freshness checks and atomic swap, so it can never be staler than the BM25 side.
Beside it, ``companion.npy`` holds each chunk's companion-embedder vector (``rag.companion``), encoded
once per distinct text (the token cache keeps them).

Crash safety: before ingestion changes any chunk it marks the index stale (a marker file beside it),
and only a rebuild that started after the last mark clears it. A run killed anywhere between its first
write and its final rebuild therefore leaves the mark, and the next ingestion or query rebuilds — even
when the chunk count happens to be unchanged (an edited file with as many chunks as before). While an
ingestion holds the knowledge base's lock, queries keep using the last complete index instead of
rebuilding from a half-written collection; chunks it names that are gone from Chroma are dropped by
the retriever.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import threading
import time
import unicodedata
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bm25s
import jieba
import numpy as np
from filelock import FileLock

from rag.chinese_text import fold
from rag.embeddings import unit_rows
from rag.language import CJK
from rag.token_cache import TokenCache, text_hash

if TYPE_CHECKING:
    from rag.companion import CompanionEncoder
    from rag.locking import IngestionLock

log = logging.getLogger(__name__)

jieba.setLogLevel(logging.WARNING)
logging.getLogger("bm25s").setLevel(logging.WARNING)  # it sets itself to DEBUG: a line per index build

_WORDS = re.compile(
    r"(?<![\d,])\d{1,3}(?:,\d{3})+(?![\d,])"  # 1,200 (thousands) or 401,403 (a list)
    r"|[a-z0-9\u00df-\u024f]+(?:[._-][a-z0-9\u00df-\u024f]+)*"  # Latin words, v2.3, file_name.py, wi-fi
    r"|[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+"  # Chinese, for jieba
)
_ACCENTED = re.compile(r"[\u00c0-\u024f]")  # Latin letters with accents: é, ü, ñ, ø (not ß, no decomposition)
_POSSESSIVE = re.compile(r"(?<=[a-z])['’]s\b")
_APOSTROPHE = re.compile(r"(?<=[a-z])['’](?=[a-z])")  # don't → dont, o'clock → oclock
# Word lists read better as text than as list literals.
_EN_STOP = frozenset(
    """a an the of to in on at for by with from and or is are was were be been it its this that these
    those what which who whom how when where why do does did can could should would will shall may might
    must i you he she we they me my your our their there here about into than then so not no if as
    dont doesnt didnt isnt arent wasnt cant wont
    """.split()  # noqa: SIM905
)
_ZH_STOP = frozenset(
    """的 了 是 在 和 与 及 或 有 就 都 也 还 又 把 被 对 从 向 为 以 之 其
    这 那 这个 那个 哪 哪个 哪些 哪里 什么 怎么 怎样 如何 多少 几 吗 呢 吧 啊
    请问 请 我 你 他 她 它 我们 你们 他们 一个 一下 可以 能 会 要 是否""".split()  # noqa: SIM905
)
_PAGE = 5000
_STATE = "state.json"
# Raised whenever ``tokenize`` changes: an index built by another tokenizer is rebuilt, since its
# tokens would not match a query's (2: text folded to Simplified script and half-width letters; 3:
# accents, apostrophes, plurals, hyphenated words and digit groups of Latin text). The token cache
# keeps each version's tokens apart (see rag.token_cache).
TOKENIZER_VERSION = 3
_VECTORS = "vectors.npy"
_COMPANION = "companion.npy"
# Longest time a query trusts the loaded index without comparing chunk counts. Chroma's count() takes
# ~25 ms at 100k chunks, so it is a backstop paid rarely, not a per-query check.
RECOUNT_S = 5.0

_ANY = object()  # a swap that replaces whatever index is there (a writer's rebuild)
_SWAP_WAIT_S = 60.0  # a swap is two renames; a minute means a stuck process, not a busy one

_Signature = tuple[int, int, int, int]  # the state file's inode, size, mtime and ctime (ns)


def tokenize(text: str) -> list[str]:
    """Keyword tokens: jieba's words of Chinese text; Latin words lower-cased, without accents
    ("café" is "cafe"), possessives or apostrophes ("employee’s" is "employee"), and singular
    ("policies" and "policy", "leaves" and "leave" meet); a hyphenated word both whole and as its
    parts ("wi-fi" is "wifi", "wi", "fi"); comma-grouped digits both joined and apart ("1,200" is
    "1200", "1" and "200", since "401,403" is two numbers). Stop words dropped.
    """
    text = fold(text).lower()
    if not text.isascii():
        text = _ACCENTED.sub(_unaccented, text)
    text = _APOSTROPHE.sub("", _POSSESSIVE.sub("", text))
    tokens: list[str] = []
    for piece in _WORDS.findall(text):
        if "," in piece:  # "1,200" is 1200, but "401,403" two codes: both readings
            tokens.extend([piece.replace(",", ""), *piece.split(",")])
        elif CJK.match(piece):
            tokens.extend(word for word in jieba.cut_for_search(piece) if word not in _ZH_STOP)
        elif "-" in piece:
            parts = [_singular(part) for part in piece.split("-") if len(part) > 1 and part not in _EN_STOP]
            tokens.extend([_singular(piece.replace("-", "")), *parts])
        elif piece not in _EN_STOP:
            tokens.append(_singular(piece))
    return tokens


def _unaccented(match: re.Match[str]) -> str:
    return "".join(
        char for char in unicodedata.normalize("NFKD", match.group()) if not unicodedata.combining(char)
    )


def _singular(word: str) -> str:
    """A plural English word's singular, by its ending alone: crude, but the same on both sides (the
    question's "leave" finds the passage's "leaves"), which is all keyword matching needs."""
    if len(word) <= 3 or not word.isalpha() or not word.isascii():
        return word
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith("ie"):  # cookie, movie: as their plurals become
        word = word[:-2] + "y"
    elif word.endswith(("sses", "ches", "shes", "xes")):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    # A final "e" goes too, so "cache" and "caches" (cut to "cach"), "bus" and "buses" meet.
    return word[:-1] if word.endswith("e") and len(word) > 3 else word


@dataclass(frozen=True)
class KeywordHit:
    id: str
    score: float
    rank: int  # 1-based


class _Loaded:
    def __init__(
        self,
        model: bm25s.BM25 | None,
        ids: list[str],
        version: str,
        vectors: np.ndarray | None = None,
        companion: np.ndarray | None = None,
    ) -> None:
        self.model, self.ids, self.version = model, ids, version
        self.vectors = vectors  # unit-length rows in ``ids`` order, or None (too many chunks, or none)
        self.companion = companion  # the same for the companion embedder (rag.companion), or None
        self.signature: _Signature | None = None  # of the state file this was checked against
        self.trusted_until = 0.0  # monotonic time until which a matching signature suffices


class KeywordIndex:
    """BM25 over one Chroma collection (and, for a small one, an exact copy of its vectors: ``nearest``);
    ``search`` and ``nearest`` are thread-safe, ``rebuild`` replaces both atomically."""

    def __init__(
        self,
        folder: Path,
        collection: Any,
        writer: IngestionLock | None = None,
        *,
        vector_limit: int = 0,
        companion: CompanionEncoder | None = None,
    ) -> None:
        """``writer``: the knowledge base's ingestion lock; while it is held, queries do not rebuild.

        ``vector_limit``: a rebuild keeps an exact copy of the vectors when the knowledge base has
        at most this many chunks (0 = never), and then also every chunk's ``companion`` vector.
        """
        self.folder = folder
        self.collection = collection
        self.writer = writer
        self.vector_limit = vector_limit
        self.companion = companion
        self._lock = threading.Lock()
        self._rebuilding = threading.Lock()  # one query-side rebuild at a time in this process
        self._swap_lock = FileLock(folder.with_name(f".{folder.name}.swap.lock"), timeout=_SWAP_WAIT_S)
        self._loaded: _Loaded | None = None
        self._stale_marker = folder.with_name(f"{folder.name}.stale")
        self.tokens = TokenCache(folder.with_name(f"{folder.name}.tokens.sqlite"), TOKENIZER_VERSION)

    # --- staleness -----------------------------------------------------------------------------
    def mark_stale(self) -> None:
        """Called before ingestion changes chunks: until a later rebuild, the index is known stale."""
        self._stale_marker.parent.mkdir(parents=True, exist_ok=True)
        self._stale_marker.write_text(uuid.uuid4().hex, encoding="utf-8")

    def _stale_token(self) -> str | None:
        try:
            return self._stale_marker.read_text(encoding="utf-8")
        except OSError:
            return None

    # --- building ------------------------------------------------------------------------------
    def rebuild(self, *, unless_replaced: bool = False) -> int:
        """Index every chunk of the collection now; returns how many.

        With ``unless_replaced`` (a query's rebuild, which holds no write lock), the new index is
        dropped if another rebuild swapped one in meanwhile: an ingestion that started and finished
        during this rebuild wrote the newer index, and putting this one over it would hide the
        ingestion's chunks until the next one (its marker is gone, so nothing would look stale).

        Chunks are read a page at a time and kept only as token-id lists (a shared vocabulary), not
        as texts or token strings, so memory stays near the index's own size; texts tokenized by an
        earlier rebuild come from the token cache instead of jieba.
        """
        stale_token = self._stale_token()
        base = self._state_version() if unless_replaced else _ANY
        ids: list[str] = []
        corpus: list[list[int]] = []
        vocabulary: dict[str, int] = {}
        hashes: list[bytes] = []
        with_vectors = 0 < self.collection.count() <= self.vector_limit
        vectors: list[np.ndarray] = []
        companion: list[np.ndarray] = []
        include = ["documents", "embeddings"] if with_vectors else ["documents"]
        offset = 0
        while True:
            page = self.collection.get(include=include, limit=_PAGE, offset=offset)
            texts = [text or "" for text in page["documents"] or []]
            # keyed by the text as matched: a cached entry serves every script variant of the text
            page_hashes = [text_hash(fold(text)) for text in texts]
            known = self.tokens.lookup(page_hashes)
            fresh = {
                key: tokenize(text) for key, text in zip(page_hashes, texts, strict=True) if key not in known
            }
            self.tokens.store(fresh.items())
            known.update(fresh)
            for key in page_hashes:
                corpus.append([vocabulary.setdefault(token, len(vocabulary)) for token in known[key]])
            ids.extend(page["ids"])
            hashes.extend(page_hashes)
            if with_vectors and len(page["ids"]):
                vectors.append(np.asarray(page["embeddings"], dtype=np.float32))
                if self.companion is not None:
                    companion.append(self._companion_vectors(texts, page_hashes))
            if len(page["ids"]) < _PAGE:
                break
            offset += _PAGE
        self.tokens.keep_only(hashes)
        version = uuid.uuid4().hex
        staging = self.folder.with_name(f".{self.folder.name}.{version}")
        staging.mkdir(parents=True)
        if ids:
            model = bm25s.BM25()
            model.index((corpus, vocabulary), show_progress=False)
            model.save(str(staging), show_progress=False)
        (staging / "ids.json").write_text(json.dumps(ids), encoding="utf-8")
        if with_vectors and vectors and len(ids) <= self.vector_limit:  # it may have grown meanwhile
            np.save(staging / _VECTORS, unit_rows(np.concatenate(vectors)))
            if companion:
                np.save(staging / _COMPANION, np.concatenate(companion))
        state = {"count": len(ids), "version": version, "tokenizer": TOKENIZER_VERSION}
        (staging / _STATE).write_text(json.dumps(state), encoding="utf-8")
        if not self._swap_in(staging, base):
            shutil.rmtree(staging, ignore_errors=True)
            return len(ids)
        if stale_token is not None and self._stale_token() == stale_token:
            self._stale_marker.unlink(missing_ok=True)  # not if a writer marked it again meanwhile
        return len(ids)

    def _companion_vectors(self, texts: list[str], hashes: list[bytes]) -> np.ndarray:
        """The companion vectors of a page of chunk texts: cached ones looked up, the rest encoded."""
        assert self.companion is not None
        known = self.tokens.lookup_vectors(hashes)
        known = {key: vector for key, vector in known.items() if len(vector) == self.companion.dimension}
        fresh = {key: text for key, text in zip(hashes, texts, strict=True) if key not in known}
        if fresh:
            encoded = self.companion.encode(list(fresh.values()))
            new = dict(zip(fresh, encoded, strict=True))
            self.tokens.store_vectors(new.items())
            known.update(new)
        return np.stack([known[key] for key in hashes])

    def _state_version(self) -> str | None:
        state = self._read_state()
        return state["version"] if state is not None else None

    def _swap_in(self, staging: Path, base: object = _ANY) -> bool:
        """Make ``staging`` the index, unless ``base`` (not ``_ANY``) is no longer the current version.

        The file lock makes the check and the two renames one step for every process: two rebuilds
        swapping at once could otherwise both move a folder onto the same name.
        """
        old = self.folder.with_name(f".{self.folder.name}.old-{uuid.uuid4().hex}")
        with self._swap_lock, self._lock:
            if base is not _ANY and self._state_version() != base:
                return False
            if self.folder.exists():
                os.replace(self.folder, old)
            os.replace(staging, self.folder)
            self._loaded = None
        shutil.rmtree(old, ignore_errors=True)
        return True

    def is_current(self) -> bool:
        """Built, not marked stale, holding as many chunks as the collection, and with the exact vector
        copy (and the companion's, when one is configured) where the knowledge base is small enough.

        The last check lets an ingestion with nothing changed add a copy to an index built before
        kbqa kept one: queries never rebuild for it, since they fall back to searching without it.
        """
        state = self._read_state()
        if state is None or self._stale_token() is not None:
            return False
        count = self.collection.count()
        if state["count"] != count or not 0 < count <= self.vector_limit:
            return state["count"] == count
        wanted = [_VECTORS, _COMPANION] if self.companion is not None else [_VECTORS]
        return all((self.folder / name).is_file() for name in wanted)

    def delete(self) -> None:
        with self._lock:
            shutil.rmtree(self.folder, ignore_errors=True)
            self._stale_marker.unlink(missing_ok=True)
            self.tokens.delete()
            self._loaded = None

    # --- searching -----------------------------------------------------------------------------
    def search(self, query: str, k: int) -> list[KeywordHit]:
        """Best ``k`` chunks sharing terms with ``query``; chunks sharing none are not returned."""
        loaded = self._current()
        tokens = tokenize(query)
        if loaded.model is None or not loaded.ids or not tokens:
            return []
        known = [token for token in tokens if token in loaded.model.vocab_dict]
        if not known:
            return []
        # bm25s.retrieve would argpartition all N scores, mostly zeros; with ties that slow numpy's
        # selection took ~9 ms at 100k chunks. Only the chunks sharing a term can be hits.
        scores = loaded.model.get_scores(known)
        best = _best(scores, np.flatnonzero(scores > 0), k)
        return [
            KeywordHit(loaded.ids[int(position)], float(scores[position]), rank)
            for rank, position in enumerate(best, start=1)
        ]

    def nearest(
        self, query_vector: np.ndarray, k: int, *, companion: bool = False
    ) -> list[tuple[str, float]] | None:
        """The ``k`` chunks most cosine-similar to ``query_vector``, exactly, best first, with their
        similarity; None when this snapshot keeps no vectors (then ask Chroma's approximate search).
        With ``companion``, ``query_vector`` is the companion embedder's and so are the chunks'."""
        name = _COMPANION if companion else _VECTORS
        if self.vector_limit <= 0:
            return None
        if not (self.folder / name).is_file() and not self._lost():
            return None  # no copy to search: do not load (or rebuild) the BM25 side for nothing
        loaded = self._current()
        matrix = loaded.companion if companion else loaded.vectors
        if matrix is None or len(loaded.ids) > self.vector_limit:  # the limit may have been lowered
            return None
        norm = float(np.linalg.norm(query_vector))
        scores = matrix @ (np.asarray(query_vector, dtype=np.float32) / (norm or 1.0))
        best = _best(scores, np.arange(len(scores)), k)
        return [(loaded.ids[int(position)], float(scores[position])) for position in best]

    def _current(self) -> _Loaded:
        signature = self._signature()  # before reading the state: a swap after it is seen next time
        with self._lock:
            loaded = self._loaded
        if (
            loaded is not None
            and signature is not None
            and loaded.signature == signature
            and time.monotonic() < loaded.trusted_until
            and not self._stale_marker.exists()
        ):
            return loaded
        state = self._read_state()
        fresh = self._fresh(state)
        writing = not fresh and self.writer is not None and self.writer.busy()
        current = loaded is not None and state is not None and loaded.version == state["version"]
        if current and (fresh or writing):
            assert loaded is not None
            if fresh:
                self._trust(loaded, signature)
            return loaded
        if not fresh and not writing:
            # Questions arriving together on a stale index start one rebuild, not one each (each is
            # minutes of segmentation at 100k chunks); the others use the last index meanwhile, or,
            # with none loaded yet, wait for that rebuild.
            if not self._rebuilding.acquire(blocking=loaded is None):
                assert loaded is not None
                return loaded
            try:
                if not self._fresh(self._read_state()):  # unless the rebuild waited for did it
                    log.warning(
                        "keyword index of %s is missing or out of date: rebuilding it", self.folder.name
                    )
                    self.rebuild(unless_replaced=True)
            finally:
                self._rebuilding.release()
            signature = self._signature()
            state = self._read_state()
            fresh = state is not None
        loaded = self._load(state) if state is not None else _Loaded(None, [], "")
        if fresh:
            self._trust(loaded, signature)
        with self._lock:
            self._loaded = loaded
        return loaded

    def _lost(self) -> bool:
        """No index at all for a knowledge base small enough to keep its vectors (its folder deleted,
        or a copied data directory without it): the next search rebuilds it. Left alone, a vector-only
        knowledge base would search approximately, without the companion, until its next ingestion."""
        if (self.folder / _STATE).is_file():
            return False
        return 0 < self.collection.count() <= self.vector_limit

    def _fresh(self, state: dict[str, Any] | None) -> bool:
        """Built, as many chunks as the collection, and not marked stale by a writer."""
        return state is not None and state["count"] == self.collection.count() and self._stale_token() is None

    @staticmethod
    def _trust(loaded: _Loaded, signature: _Signature | None) -> None:
        """Let queries use ``loaded`` for ``RECOUNT_S`` while the state file and marker stay as they are."""
        loaded.signature = signature
        loaded.trusted_until = time.monotonic() + RECOUNT_S

    def _signature(self) -> _Signature | None:
        try:
            stat = os.stat(self.folder / _STATE)
        except OSError:
            return None
        return stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns

    def _read_state(self) -> dict[str, Any] | None:
        """The built index's state, or None when there is none or another tokenizer built it."""
        try:
            state = json.loads((self.folder / _STATE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return state if state.get("tokenizer", 1) == TOKENIZER_VERSION else None

    def _load(self, state: dict[str, Any]) -> _Loaded:
        ids = json.loads((self.folder / "ids.json").read_text(encoding="utf-8"))
        model = bm25s.BM25.load(str(self.folder), show_progress=False) if ids else None
        copies: list[np.ndarray | None] = []
        for name in (_VECTORS, _COMPANION):
            matrix = np.load(self.folder / name, mmap_mode="r") if (self.folder / name).is_file() else None
            # a length mismatch cannot come from rebuild(); a hand-edited folder
            copies.append(matrix if matrix is not None and len(matrix) == len(ids) else None)
        return _Loaded(model, ids, state["version"], *copies)


def _best(scores: np.ndarray, positions: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` of ``positions`` with the highest ``scores``, best first, ties by position.

    Selecting before sorting: a full sort of every score cost milliseconds at 100k chunks.
    """
    if len(positions) > k:
        positions = positions[np.argpartition(scores[positions], len(positions) - k)[-k:]]
    return positions[np.lexsort((positions, -scores[positions]))]


def keyword_folder(data_dir: Path, kb: str) -> Path:
    return data_dir / "keyword" / kb
