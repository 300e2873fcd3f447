"""Near-duplicate detection: tokens, MinHash signatures, the LSH index, clusters."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kenning.engine.dedup import (
    MIN_TOKENS,
    NUM_PERM,
    Cluster,
    DuplicateIndex,
    code_tokens,
    find_clusters,
    jaccard,
    minhash,
    signature_bytes,
    signature_from_bytes,
    similarity,
)
from kenning.errors import IndexCorruptError

# Each language: an original, the same function renamed and reformatted (other
# names, other literals, other comments, other line breaks), and an unrelated
# function of about the same length.
SAMPLES: dict[str, tuple[str, str, str]] = {
    "python": (
        '''
def merge_config(base, override, *, deep=True):
    """Merge two config dicts."""
    result = dict(base)
    for key, value in override.items():
        if deep and isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge_config(result[key], value, deep=deep)
        elif value is None:
            result.pop(key, None)
        else:
            result[key] = value
    return result
''',
        '''
def combine_settings(defaults, extra, *, recursive=False):
    """Combine settings, the extra ones winning."""
    out = dict(defaults)
    for name, item in extra.items():
        if (recursive and isinstance(item, dict)
                and isinstance(out.get(name), dict)):
            # recurse into nested tables
            out[name] = combine_settings(out[name], item,
                                         recursive=recursive)
        elif item is None:
            out.pop(name, None)
        else:
            out[name] = item
    return out
''',
        """
def count_words(lines, min_len=3):
    counts = {}
    total = 0
    for line in lines:
        for word in line.lower().split():
            if len(word) < min_len:
                continue
            counts[word] = counts.get(word, 0) + 1
            total += 1
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])
    return ranked[:10], total
""",
    ),
    "javascript": (
        """
async function fetchWithRetry(url, options = {}, retries = 3) {
  let lastError = null;
  for (let attempt = 0; attempt < retries; attempt++) {
    try {
      const response = await fetch(url, options);
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      return await response.json();
    } catch (err) {
      lastError = err;
      await new Promise((r) => setTimeout(r, 2 ** attempt * 100));
    }
  }
  throw lastError;
}
""",
        """
// Load a resource, trying again on failure.
async function loadResource(endpoint, init = {}, maxTries = 5)
{
    let previous = null;
    for (let i = 0; i < maxTries; i++)
    {
        try
        {
            const res = await fetch(endpoint, init);
            if (!res.ok) throw new Error(`status ${res.status} from server`);
            return await res.json();
        }
        catch (e)
        {
            previous = e;
            await new Promise((done) => setTimeout(done, 2 ** i * 250));
        }
    }
    throw previous;
}
""",
        """
function groupBy(items, keyFn) {
  const groups = new Map();
  for (const item of items) {
    const key = keyFn(item);
    if (!groups.has(key)) {
      groups.set(key, []);
    }
    groups.get(key).push(item);
  }
  const out = {};
  for (const [key, list] of groups) {
    out[key] = list.sort((a, b) => a.rank - b.rank).slice(0, 10);
  }
  return out;
}
""",
    ),
    "go": (
        """
func ReadLines(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	var lines []string
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		lines = append(lines, scanner.Text())
	}
	if err := scanner.Err(); err != nil {
		return nil, err
	}
	return lines, nil
}
""",
        """
// loadRows returns every row of the file.
func loadRows(name string) ([]string, error) {
	fh, e := os.Open(name)
	if e != nil { return nil, fmt.Errorf("cannot open %q: %w", name, e) }
	defer fh.Close()
	var rows []string
	sc := bufio.NewScanner(fh)
	for sc.Scan() { rows = append(rows, sc.Text()) }
	if e := sc.Err(); e != nil { return nil, e }
	return rows, nil
}
""",
        """
func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	status := map[string]any{"uptime": time.Since(s.started).Seconds()}
	s.mu.RLock()
	status["connections"] = len(s.conns)
	s.mu.RUnlock()
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(status); err != nil {
		http.Error(w, err.Error(), 500)
	}
}
""",
    ),
    "rust": (
        """
pub fn parse_pairs<'a>(input: &'a str, sep: char) -> Result<Vec<(&'a str, i64)>, String> {
    let mut out = Vec::new();
    for (lineno, line) in input.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line.split_once(sep).ok_or(format!("line {}", lineno + 1))?;
        let value: i64 = value.trim().parse().map_err(|e| format!("{e}"))?;
        out.push((key.trim(), value));
    }
    Ok(out)
}
""",
        """
/// Reads `name=value` records.
pub fn read_records<'s>(text: &'s str, delim: char)
    -> Result<Vec<(&'s str, i64)>, String>
{
    let mut records = Vec::new();
    for (n, row) in text.lines().enumerate() {
        let row = row.trim();
        if row.is_empty() || row.starts_with(';') { continue; }
        let (name, raw) = row
            .split_once(delim)
            .ok_or(format!("bad record at {}", n + 2))?;
        let raw: i64 = raw.trim().parse().map_err(|err| format!("{err}"))?;
        records.push((name.trim(), raw));
    }
    Ok(records)
}
""",
        """
impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(handle) = self.worker.take() {
            self.shutdown.store(true, Ordering::SeqCst);
            match handle.join() {
                Ok(()) => log::debug!("worker for {} stopped", self.addr),
                Err(_) => log::warn!("worker for {} panicked", self.addr),
            }
        }
        let mut pool = self.pool.lock().expect("pool poisoned");
        pool.release(self.id);
        if pool.idle() > pool.capacity() / 2 {
            pool.shrink_to(pool.capacity() / 2);
        }
        self.metrics.connections.fetch_sub(1, Ordering::Relaxed);
    }
}
""",
    ),
    "java": (
        """
public static Map<String, Integer> countByStatus(List<Order> orders) {
    Map<String, Integer> counts = new HashMap<>();
    for (Order order : orders) {
        if (order == null || order.getStatus() == null) {
            continue;
        }
        String status = order.getStatus().toLowerCase();
        counts.put(status, counts.getOrDefault(status, 0) + 1);
    }
    return counts;
}
""",
        """
public static Map<String, Integer> tallyKinds(List<Ticket> tickets)
{
    Map<String, Integer> tally = new HashMap<>();
    for (Ticket t : tickets)
    {
        if (t == null || t.getKind() == null) continue;  // skip incomplete
        String kind = t.getKind().toLowerCase();
        tally.put(kind, tally.getOrDefault(kind, 0) + 1);
    }
    return tally;
}
""",
        """
@Override
protected void onDraw(Canvas canvas) {
    super.onDraw(canvas);
    float cx = getWidth() / 2f, cy = getHeight() / 2f;
    paint.setColor(active ? activeColor : idleColor);
    canvas.drawCircle(cx, cy, radius * scale, paint);
    if (label != null) {
        canvas.drawText(label, cx, cy + textSize / 3f, textPaint);
    }
}
""",
    ),
}


def sig(text: str, language: str | None = None) -> np.ndarray:
    out = minhash(text, language)
    assert out is not None, "sample too short to have a signature"
    return out


def unit(v: list[float]) -> np.ndarray:
    a = np.asarray(v, dtype=np.float32)
    return a / np.linalg.norm(a)


# --------------------------------------------------------------------------- tokens


def test_tokens_abstract_names_literals_and_drop_comments() -> None:
    tokens = code_tokens('x = foo(42, "hi")  # note\nreturn x', "python")
    assert tokens == ["ID", "=", "ID", "(", "NUM", ",", "STR", ")", "return", "ID"]


def test_tokens_do_not_depend_on_spacing() -> None:
    assert code_tokens("if(a!=b){c+=1;}") == code_tokens("if (a != b) {\n    c += 1;\n}")


def test_block_comments_and_line_comments_dropped_in_c_like_code() -> None:
    text = "/* header\n spanning lines */ int x = 1; // trailing\n"
    assert code_tokens(text, "c") == ["int", "ID", "=", "NUM", ";"]


def test_c_preprocessor_and_decrement_are_not_comments() -> None:
    assert code_tokens("#include <stdio.h>\nx--;") == [
        "#", "ID", "<", "ID", ".", "ID", ">", "ID", "--", ";",
    ]  # fmt: skip


def test_python_floor_division_is_not_a_comment() -> None:
    assert code_tokens("a = b // 2", "python") == ["ID", "=", "ID", "//", "NUM"]


def test_dash_comments_recognised_without_a_language() -> None:
    assert code_tokens("x = 1\n  -- note\ny = x -- more") == ["ID", "=", "NUM", "ID", "=", "ID"]


def test_lua_comments_dropped() -> None:
    text = "--[[ block\ncomment ]] local x = 1 -- trailing\nreturn x"
    assert code_tokens(text, "lua") == ["local", "ID", "=", "NUM", "return", "ID"]


def test_rust_lifetimes_are_names_not_strings() -> None:
    assert code_tokens("fn f<'a>(x: &'a str) -> char { 'z' }", "rust") == [
        "fn", "ID", "<", "ID", ">", "(", "ID", ":", "&", "ID", "ID", ")", "->",
        "ID", "{", "STR", "}",
    ]  # fmt: skip


# --------------------------------------------------------------------------- signatures


def test_tiny_function_has_no_signature() -> None:
    getter = "def name(self):\n    return self._name\n"
    assert len(code_tokens(getter)) < MIN_TOKENS
    assert minhash(getter) is None


def test_signature_is_deterministic_and_round_trips_through_bytes() -> None:
    text = SAMPLES["python"][0]
    a = sig(text, "python")
    assert a.dtype == np.uint32 and a.shape == (NUM_PERM,)
    assert np.array_equal(a, sig(text, "python"))
    data = signature_bytes(a)
    assert len(data) == 4 * NUM_PERM
    assert np.array_equal(signature_from_bytes(data), a)


def test_truncated_signature_bytes_are_reported_as_corrupt() -> None:
    with pytest.raises(IndexCorruptError, match="expected 256"):
        signature_from_bytes(b"\x00" * 10)


@pytest.mark.parametrize("language", sorted(SAMPLES))
def test_renamed_copy_is_similar_and_unrelated_code_is_not(language: str) -> None:
    original, copy, unrelated = SAMPLES[language]
    n_orig, n_other = len(code_tokens(original)), len(code_tokens(unrelated))
    assert abs(n_orig - n_other) <= 0.35 * n_orig, "unrelated sample should be of similar length"
    assert jaccard(sig(original, language), sig(copy, language)) >= 0.75
    assert jaccard(sig(original, language), sig(unrelated, language)) < 0.3


def test_similarity_blends_structure_with_embedding() -> None:
    assert similarity(0.8) == 0.8
    assert similarity(0.8, 1.0) == pytest.approx(0.85)
    assert similarity(1.0, 0.0) == pytest.approx(0.75)
    assert similarity(1.0, -0.5) == pytest.approx(0.75)  # opposite vectors count as unrelated


# --------------------------------------------------------------------------- index


def build_index() -> tuple[DuplicateIndex, dict[int, tuple[str, str]]]:
    """Keys 10*i + 0/1/2 are original/copy/unrelated of the i-th language."""
    index = DuplicateIndex()
    names: dict[int, tuple[str, str]] = {}
    for i, (language, texts) in enumerate(sorted(SAMPLES.items())):
        for j, text in enumerate(texts):
            index.add(10 * i + j, sig(text, language))
            names[10 * i + j] = (language, ["original", "copy", "unrelated"][j])
    return index, names


@pytest.mark.parametrize("language", sorted(SAMPLES))
def test_query_finds_renamed_copy_and_not_unrelated(language: str) -> None:
    index, _ = build_index()
    i = sorted(SAMPLES).index(language)
    original = 10 * i
    found = index.query(sig(SAMPLES[language][0], language), exclude=original)
    keys = [k for k, _ in found]
    assert keys[:1] == [original + 1]
    assert original + 2 not in keys
    assert found[0][1] >= 0.75


def test_query_limit_keeps_the_best() -> None:
    index = DuplicateIndex()
    original, copy, _ = SAMPLES["python"]
    index.add(1, sig(copy, "python"))
    index.add(2, sig(original, "python"))
    index.add(3, sig(original, "python"))
    assert index.query(sig(original, "python"), limit=2) == [(2, 1.0), (3, 1.0)]
    assert index.query(sig(original, "python"), exclude=2, limit=1) == [(3, 1.0)]


def test_query_without_exclude_returns_the_chunk_itself_first() -> None:
    index, _ = build_index()
    found = index.query(sig(SAMPLES["go"][0], "go"))
    go = 10 * sorted(SAMPLES).index("go")
    assert found[0] == (go, 1.0)


def test_remove_forgets_key() -> None:
    index, _ = build_index()
    py = 10 * sorted(SAMPLES).index("python")
    assert len(index) == 15
    index.remove(py + 1)
    assert len(index) == 14
    assert py + 1 not in index
    assert [k for k, _ in index.query(sig(SAMPLES["python"][0], "python"), exclude=py)] == []
    index.remove(py + 1)  # a second remove is a no-op
    assert len(index) == 14


def test_readding_a_key_replaces_its_signature() -> None:
    index, _ = build_index()
    py = 10 * sorted(SAMPLES).index("python")
    # The python copy's chunk is edited into something unrelated...
    index.add(py + 1, sig(SAMPLES["java"][2], "java"))
    assert len(index) == 15
    assert py + 1 not in [k for k, _ in index.query(sig(SAMPLES["python"][0], "python"))]
    # ...and back.
    index.add(py + 1, sig(SAMPLES["python"][1], "python"))
    assert py + 1 in [k for k, _ in index.query(sig(SAMPLES["python"][0], "python"))]


def test_index_reuses_space_after_many_updates() -> None:
    index = DuplicateIndex()
    s = sig(SAMPLES["go"][0], "go")
    for _ in range(500):
        index.add(1, s)
        index.add(2, s)
        index.remove(2)
    assert len(index) == 1
    assert index.query(s) == [(1, 1.0)]


def test_empty_index_and_bad_signature() -> None:
    index = DuplicateIndex()
    assert index.query(sig(SAMPLES["go"][0], "go")) == []
    with pytest.raises(ValueError, match="64 values"):
        index.add(1, np.zeros(10, dtype=np.uint32))


# --------------------------------------------------------------------------- clusters


def all_keys(cluster: Cluster) -> set[int]:
    return {cluster.canonical, *(m.key for m in cluster.members)}


def test_clusters_group_copies_and_leave_unrelated_out() -> None:
    keys, sigs = [], []
    for i, (language, texts) in enumerate(sorted(SAMPLES.items())):
        for j, text in enumerate(texts):
            keys.append(10 * i + j)
            sigs.append(sig(text, language))
    clusters = find_clusters(keys, sigs, threshold=0.75)
    assert sorted(sorted(all_keys(c)) for c in clusters) == [[10 * i, 10 * i + 1] for i in range(5)]
    for c in clusters:
        assert c.size == 2
        assert len(c.members) == 1
        assert 0.75 <= c.members[0].similarity <= 1.0


def test_tiny_chunks_are_left_out_of_clusters() -> None:
    text = SAMPLES["python"][0]
    clusters = find_clusters([1, 2, 3], [sig(text), None, sig(text)])
    assert [sorted(all_keys(c)) for c in clusters] == [[1, 3]]


# A base function and two variants that each add a different statement in a
# different place: each variant is close to the base, further from the other.
BASE = [
    "def summarize(records, field):",
    "    values = [r[field] for r in records if r.get(field) is not None]",
    "    if not values:",
    "        return None",
    "    values.sort()",
    "    middle = len(values) // 2",
    "    median = values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2",
    "    mean = sum(values) / len(values)",
    "    spread = max(values) - min(values)",
    "    return {'mean': mean, 'median': median, 'spread': spread, 'n': len(values)}",
]
VARIANT_A = [
    *BASE[:2],
    "    log.debug('summarizing %d values of %s', len(values), field)",
    *BASE[2:],
]
VARIANT_B = [*BASE[:8], "    deviation = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5", *BASE[8:]]  # fmt: skip


def test_medoid_is_the_central_variant() -> None:
    texts = ["\n".join(VARIANT_A), "\n".join(BASE), "\n".join(VARIANT_B)]
    sigs = [sig(t, "python") for t in texts]
    assert jaccard(sigs[0], sigs[1]) > jaccard(sigs[0], sigs[2])
    assert jaccard(sigs[2], sigs[1]) > jaccard(sigs[0], sigs[2])
    clusters = find_clusters([7, 8, 9], sigs, threshold=0.5)
    assert len(clusters) == 1
    assert clusters[0].canonical == 8
    assert {m.key for m in clusters[0].members} == {7, 9}
    sims = [m.similarity for m in clusters[0].members]
    assert sims == sorted(sims, reverse=True)


def test_clusters_are_largest_first() -> None:
    py, js = SAMPLES["python"], SAMPLES["javascript"]
    keys = [1, 2, 3, 4, 5, 6]
    sigs = [
        sig(js[0]),
        sig(py[0], "python"),
        sig(js[1]),
        sig(py[1], "python"),
        sig(py[0].replace("dict(base)", "dict(base or {})"), "python"),
        sig(py[2], "python"),
    ]
    clusters = find_clusters(keys, sigs, threshold=0.75)
    assert [c.size for c in clusters] == [3, 2]
    assert all_keys(clusters[0]) == {2, 4, 5}
    assert all_keys(clusters[1]) == {1, 3}


def test_vectors_veto_a_structural_match_with_different_meaning() -> None:
    text = SAMPLES["java"][0]
    sigs = [sig(text), sig(text), sig(text)]
    vectors = np.stack([unit([1, 0, 0]), unit([1, 0.05, 0]), unit([0, 0, 1])])
    clusters = find_clusters([1, 2, 3], sigs, vectors=vectors, threshold=0.85)
    assert [sorted(all_keys(c)) for c in clusters] == [[1, 2]]
    assert clusters[0].members[0].similarity > 0.99


def test_vectors_confirm_a_looser_structural_match() -> None:
    original, copy, _ = SAMPLES["python"]
    a, b = sig(original, "python"), sig(copy, "python")
    assert jaccard(a, b) < 0.85  # not enough on its own
    vectors = np.stack([unit([1, 0.1]), unit([1, 0.12])])
    assert find_clusters([1, 2], [a, b], threshold=0.85) == []
    clusters = find_clusters([1, 2], [a, b], vectors=vectors, threshold=0.85)
    assert [sorted(all_keys(c)) for c in clusters] == [[1, 2]]


def test_chunk_without_a_vector_is_judged_on_structure() -> None:
    text = SAMPLES["rust"][0]
    vectors = np.stack([unit([1, 0]), np.zeros(2, dtype=np.float32), unit([0, 1])])
    clusters = find_clusters([1, 2, 3], [sig(text, "rust")] * 3, vectors=vectors)
    # 2 has no vector: linked to both on Jaccard 1.0; 1 and 3 disagree in meaning.
    assert len(clusters) == 1
    assert clusters[0].canonical == 2
    assert [(m.key, m.similarity) for m in clusters[0].members] == [(1, 1.0), (3, 1.0)]


def test_large_cluster_is_split_into_children() -> None:
    # 120 structurally identical chunks whose embeddings form two families:
    # linked across families at 0.85, but not at the stricter split threshold.
    text = SAMPLES["go"][0]
    s = sig(text, "go")
    keys = list(range(120))
    fam_a, fam_b = unit([1, 0, 0]), unit([0.8, 0.6, 0])  # cosine 0.8 -> blend 0.9
    vectors = np.stack([fam_a if k % 2 else fam_b for k in keys])
    clusters = find_clusters(keys, [s] * 120, vectors=vectors, threshold=0.85)
    assert len(clusters) == 1
    top = clusters[0]
    assert top.size == 120 and len(top.members) == 119
    assert [c.size for c in top.children] == [60, 60]
    assert {k % 2 for k in all_keys(top.children[0])} in ({0}, {1})
    assert all_keys(top.children[0]) | all_keys(top.children[1]) == set(keys)
    assert all(c.children == [] for c in top.children)


def test_find_clusters_rejects_mismatched_inputs() -> None:
    s = sig(SAMPLES["go"][0], "go")
    with pytest.raises(ValueError, match="2 keys but 1 signatures"):
        find_clusters([1, 2], [s])
    with pytest.raises(ValueError, match="vectors"):
        find_clusters([1, 2], [s, s], vectors=np.zeros((3, 4), dtype=np.float32))
    assert find_clusters([], []) == []


def test_component_labelling_matches_a_plain_union_find() -> None:
    from kenning.engine.dedup import _components

    rng = np.random.default_rng(3)
    n = 500
    i, j = rng.integers(0, n, 300), rng.integers(0, n, 300)
    parent = list(range(n))

    def root(x: int) -> int:
        while parent[x] != x:
            x = parent[x]
        return x

    for a, b in zip(i.tolist(), j.tolist(), strict=True):
        ra, rb = root(a), root(b)
        parent[max(ra, rb)] = min(ra, rb)
    expected = [root(x) for x in range(n)]
    assert _components(n, i, j).tolist() == expected


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["add", "remove"]), st.integers(0, 150), st.integers(0, 3)),
        max_size=300,
    )
)
def test_the_lsh_index_is_right_at_every_size(ops: list[tuple[str, int, int]]) -> None:
    """From empty, through growth past its first allocation and back down to
    nothing, a key is found by its own signature with every key that shares
    it, and a removed key is never found."""
    rng = np.random.default_rng(3)
    pool = [rng.integers(0, 2**32, NUM_PERM, dtype=np.uint64).astype(np.uint32) for _ in range(4)]
    index = DuplicateIndex(0.8)
    model: dict[int, int] = {}
    assert index.query(pool[0]) == []
    for op, key, which in ops:
        if op == "add":
            index.add(key, pool[which])
            model[key] = which
        else:
            index.remove(key)
            model.pop(key, None)
        assert len(index) == len(model)
        for probe in range(len(pool)):
            found = index.query(pool[probe])
            assert sorted(k for k, _ in found) == sorted(k for k, w in model.items() if w == probe)
            assert all(score == 1.0 for _, score in found)
