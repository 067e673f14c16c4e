"""Write the README's benchmark figures from what the benchmarks recorded in tests/bench/results/*.json.

    .venv/bin/python scripts/readme_tables.py           # rewrite the marked blocks of README.md
    .venv/bin/python scripts/readme_tables.py --check   # exit 1, showing the difference, if they disagree

A block is `<!-- bench:NAME -->…<!-- /bench -->` (a table on lines of its own, or a few words inside a
sentence); NAME picks a renderer below, and each renderer reads one results file. The suite runs the check
(tests/system/test_readme.py), so the README cannot drift from the recorded results: rerun a benchmark, then this.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # its sibling, also when loaded by its path (tests)
import readme_block  # noqa: E402

ROOT = readme_block.ROOT
RESULTS = ROOT / "tests" / "bench" / "results"
BLOCK = re.compile(r"<!-- bench:([\w-]+) -->(.*?)<!-- /bench -->", re.DOTALL)
RENDERERS: dict[str, Callable[[], str]] = {}


class ResultsError(Exception):
    """A results file is missing or does not hold what a README block needs."""


def load(name: str) -> dict:
    path = RESULTS / f"{name}.json"
    if not path.exists():
        raise ResultsError(f"{path.relative_to(ROOT)} is missing: run the benchmark that records `{name}`")
    return json.loads(path.read_text())


def renderer(block: str) -> Callable[[Callable[[], str]], Callable[[], str]]:
    def register(fn: Callable[[], str]) -> Callable[[], str]:
        RENDERERS[block] = fn
        return fn

    return register


def ms(value: float) -> str:
    """Milliseconds to three significant figures at most: 5.6, 27.2, 107."""
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def table(header: list[str], rows: list[list[str]], *sources: str) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n" + "\n".join(lines) + "\n\n" + " ".join(provenance(s) for s in sources) + "\n"


def provenance(name: str) -> str:
    """Where a table's figures come from: the results file, its commit, the CPUs and any thread setting."""
    data = load(name)
    threads = ", ".join(f"{k}={v}" for k, v in data.get("threads", {}).items() if v)
    commit = (data.get("git_commit") or "unknown")[:7] + (
        " with local changes" if data.get("git_dirty") else ""
    )
    parts = [f"commit {commit}", f"{data.get('cpu_count')} CPUs"] + ([threads] if threads else [])
    note = f"; {data['note']}" if data.get("note") else ""
    return f"<sub>`tests/bench/results/{name}.json`: {', '.join(parts)}{note}.</sub>"


@renderer("retrieval")
def retrieval() -> str:
    results = load("retrieval")["figures"]
    rows = []
    for collection, modes in results.items():
        # {mode: figures}, or {mode: {group: figures}} when a collection is also scored by query category.
        grouped = {m: v if "ndcg@10" not in v else {"all": v} for m, v in modes.items()}
        for group in next(iter(grouped.values())):
            label = collection if group == "all" else f"{collection} {group}"
            best = {k: max(grouped[m][group][k] for m in grouped) for k in ("ndcg@10", "recall@10")}
            for mode, by_group in grouped.items():
                m = by_group[group]
                cells = [
                    f"**{m[k]:.3f}**" if m[k] == best[k] else f"{m[k]:.3f}" for k in ("ndcg@10", "recall@10")
                ]
                rows.append([f"{label} ({m['queries']} queries)", mode, *cells])
    return table(["collection", "mode", "nDCG@10", "Recall@10"], rows, "retrieval")


@renderer("spec-projects")
def spec_projects() -> str:
    """Each set with the defaults a user gets, by mode, then hybrid by question kind."""
    sets = load("spec_projects")["figures"]["sets"]
    keys = ("hit@1", "hit@3", "mrr", "ndcg@10")
    rows = []
    for group in ("all", "kind own-words", "kind paraphrase", "kind buried"):
        for set_name, configs in sets.items():
            for mode in ("keyword", "hybrid") if group == "all" else ("hybrid",):
                f = configs["defaults"][mode][group]
                label = mode if group == "all" else f"{mode}, {group.removeprefix('kind ')}"
                name = f"spec-projects-{set_name} ({f['questions']})"
                rows.append([name, label, *(f"{f[k]:.3f}" for k in keys), str(f["rule_first"])])
    header = ["set (questions)", "mode", "hit@1", "hit@3", "MRR", "nDCG@10", "a rule first, not the answer"]
    return table(header, rows, "spec_projects")


@renderer("hugo")
def hugo() -> str:
    f = load("hugo")["figures"]
    rows = [
        ["files indexed", f"{f['files']} ({f['chunks']} chunks)"],
        ["keyword phase (parse, chunk, FTS commit)", f"{f['keyword_phase_s']:.2f} s"],
        ["embedding, pipeline", f"{f['pipeline_chunks_per_s']:.1f} chunks/s"],
        ["embedding, raw SentenceTransformer.encode", f"{f['raw_encode_chunks_per_s']:.1f} chunks/s"],
        ["pipeline / raw", f"{f['pipeline_vs_raw'] * 100:.0f}%"],
        ["no-change rescan (median of 7)", f"{f['no_change_rescan_s'] * 1000:.0f} ms"],
        [
            "one file changed, rescan with embedding (median of 7)",
            f"{f['one_file_changed_rescan_s'] * 1000:.0f} ms",
        ],
    ]
    rows += [
        [
            f"search {m}, p50 / p95 over {f['queries']} queries",
            f"{ms(f[f'search_{m}_p50_ms'])} / {ms(f[f'search_{m}_p95_ms'])} ms",
        ]
        for m in ("keyword", "semantic", "hybrid")
    ]
    return table(["measure", "value"], rows, "hugo")


@renderer("first-index")
def first_index() -> str:
    f = load("hugo")["figures"]
    embed_s = f["chunks"] / f["pipeline_chunks_per_s"]
    return (
        f"the {f['files']:,} pages of md-hugo-docs ({f['chunks']:,} chunks): keyword phase "
        f"{f['keyword_phase_s']:.2f} s, embeddings {embed_s:.0f} s ({f['pipeline_chunks_per_s']:.0f} chunks/s)"
    )


@renderer("watch")
def watch() -> str:
    f = load("watch")["figures"]
    batches = f["branch_switch_batches"]
    rows = [
        [
            f"edit → keyword search finds it, p50 / p95 over {f['edits']} edits",
            f"{f['keyword_visible_p50_ms']:.0f} / {f['keyword_visible_p95_ms']:.0f} ms",
        ],
        [
            "… in place / by rename-over, p50",
            f"{f['keyword_visible_inplace_p50_ms']:.0f} / {f['keyword_visible_rename_p50_ms']:.0f} ms",
        ],
        [
            "edit → semantic search answers with the new paragraph's chunk, p50 / p95",
            f"{f['semantic_visible_p50_ms']:.0f} / {f['semantic_visible_p95_ms']:.0f} ms",
        ],
        [
            f"`git checkout` of a branch changing all {f['files']:,} files → index equals a fresh scan of it",
            f"{f['branch_switch_keyword_converged_s']:.1f} s ({batches} batch{'' if batches == 1 else 'es'})",
        ],
        ["… → every changed chunk embedded", f"{f['branch_switch_embeddings_done_s']:.1f} s"],
        [
            "fresh keyword scan of that branch / fresh full scan with embeddings, same run",
            f"{f['fresh_keyword_scan_of_other_s']:.1f} s / {f['fresh_full_scan_s']:.0f} s",
        ],
        [
            f"idle watcher, CPU over {f['idle_window_s']:.0f} s",
            f"{f['idle_cpu_s']:.2f} s ({f['idle_cpu_percent_of_one_core']:.2f}% of one core)",
        ],
    ]
    return table(["measure", "value"], rows, "watch")


@renderer("server")
def server() -> str:
    f = load("server")["figures"]
    rows = [
        [
            f"spawn → `tools/list` answered (median of {f['startup_spawns']}; torch installed, not imported)",
            f"{f['startup_to_tools_list_s']:.2f} s",
        ],
        ["`index.db-updated` check before each call (nothing changed)", f"{f['signal_check_us']:.0f} µs"],
    ]
    rows += [
        [
            f"`memory_search` {m}, p50 / p95 over {f['queries']} queries: stdio / in-process",
            f"{ms(f[f'stdio_{m}_p50_ms'])} / {ms(f[f'stdio_{m}_p95_ms'])} ms vs "
            f"{ms(f[f'inprocess_{m}_p50_ms'])} / {ms(f[f'inprocess_{m}_p95_ms'])} ms",
        ]
        for m in ("keyword", "hybrid")
    ]
    for label, what in (
        ("idle_watching", "hosting the watcher (default; indexing model loaded)"),
        ("idle_not_watching", "searches only (`SPECMEM_WATCH=0`)"),
    ):
        if f"{label}_rss_mb" in f:
            rows.append(
                [
                    f"RSS of an idle server after 20 hybrid searches, {what}: now / peak",
                    f"{f[f'{label}_rss_mb']:.0f} / {f[f'{label}_peak_rss_mb']:.0f} MB",
                ]
            )
    return table(["measure", "value"], rows, "server")


@renderer("takeover")
def takeover() -> str:
    f = load("takeover")["figures"]
    return (
        f"over {f['runs']} run{'' if f['runs'] == 1 else 's'}: p50 {f['kill_to_searchable_p50_s']:.2f} s, p95 {f['kill_to_searchable_p95_s']:.2f} s "
        f"(min {f['kill_to_searchable_min_s']:.2f} s)"
    )


@renderer("concurrency")
def concurrency() -> str:
    f = load("concurrency")["figures"]
    rows = []
    for load_, label in (("back_to_back", "back to back"), ("paced", "paced")):
        for n in (1, 2, 4):
            key = f"{load_}_{n}_servers"
            vs_one = f"{f[f'{key}_p95_ratio_vs_1_quiet']:.2f}"
            rows.append(
                [
                    f"{n}, {label}",
                    f"{ms(f[f'{key}_no_writer_p50_ms'])} / {ms(f[f'{key}_no_writer_p95_ms'])} ms",
                    f"{ms(f[f'{key}_with_writer_p50_ms'])} / {ms(f[f'{key}_with_writer_p95_ms'])} ms",
                    f"**{vs_one}**" if n == 1 else vs_one,  # the bar is for one server
                    f"{f[f'{key}_p95_ratio_vs_{n}_quiet']:.2f}",
                ]
            )
    header = ["servers, load", "no writer p50 / p95", "with writer p50 / p95", "p95 ÷ 1 quiet server"]
    return table([*header, "p95 ÷ same servers quiet"], rows, "concurrency")


@renderer("concurrency-writes")
def concurrency_writes() -> str:
    f = load("concurrency")["figures"]
    rows = [
        ["`memory_write` through 1 server", f"{f['memory_write_per_s_1_server']:.0f} writes/s"],
        [
            "`memory_write` through 4 servers at once (total)",
            f"{f['memory_write_per_s_4_servers']:.0f} writes/s",
        ],
        ["RSS of one server, corpus indexed, model warm", f"{f['server_rss_mb_model_warm']:.0f} MB"],
    ]
    return table(["measure", "value"], rows, "concurrency")


@renderer("concurrency-writer-cpu")
def concurrency_writer_cpu() -> str:
    return f"{load('concurrency')['figures']['watcher_cpu_share_while_editing']:.2f} of a core"


@renderer("concurrency-omp2")
def concurrency_omp2() -> str:
    data = load("concurrency-readers-only-omp2")
    if data["threads"].get("OMP_NUM_THREADS") != "2":
        raise ResultsError("concurrency-readers-only-omp2.json was not recorded with OMP_NUM_THREADS=2")
    f = data["figures"]
    ratios = [f"{f[f'paced_{n}_servers_p95_ratio_vs_1_quiet']:.3g}" for n in (1, 2, 4)]
    return (
        f"paced p95 ratios of {ratios[0]}, {ratios[1]} and {ratios[2]}, four servers at "
        f"{ms(f['paced_4_servers_with_writer_p95_ms'])} ms"
    )


@renderer("notify")
def notify() -> str:
    f = load("notify")["figures"]
    return f"p50 {ms(f['p50_ms'])} ms, p95 {ms(f['p95_ms'])} ms (max {ms(f['max_ms'])} ms) over {f['edits']} edits"


@renderer("duplicates")
def duplicates() -> str:
    f = load("duplicates")["figures"]
    pairs = f["pairs"].values()
    specs, rewritten = f["per_corpus_at_threshold"]["specs"], f["pairs"]["specs"]["paraphrase"]
    false = specs["false_warning_rate"]
    return (
        f"{f['threshold']}, chosen on {sum(p['paraphrase'] for p in pairs)} paraphrase and "
        f"{sum(p['non_paraphrase'] for p in pairs):,} non-paraphrase pairs: it catches "
        f"{round(specs['recall'] * rewritten)} of {rewritten} rewritten project memories with "
        + ("no false warning" if not false else f"{false:.1%} of their writes falsely warned")
        + f", and warns on {f['at_threshold']['false_warning_rate']:.1%} of writes that duplicate nothing"
    )


PEER_STEPS = {
    "first_keyword_index": "first keyword index (2,000 files)",
    "noop_rescan": "no-op rescan",
    "one_file_changed": "one file changed, rescan",
    "keyword_search_cli": "one CLI keyword search",
    "version": "`--version`",
    "help": "`--help`",
}


def seconds(value: float) -> str:
    return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"


@renderer("peers")
def peers() -> str:
    f = load("peers")["figures"]
    rows = []
    for key, label in PEER_STEPS.items():
        m = f["measures"].get(key)
        if m is None:
            continue
        ours, theirs = m["specmem"], m["qmd"]
        rows.append(
            [
                label,
                f"{seconds(ours['wall_s'])} / {ours['cpu_s']:.2f}",
                f"{seconds(theirs['wall_s'])} / {theirs['cpu_s']:.2f}",
                f"**{m['wall_ratio']:.2f}×**",
                f"{m['cpu_ratio']:.2f}×",
                f"{ours['max_rss_mb']:.0f} / {theirs['max_rss_mb']:.0f} MB",
            ]
        )
    versions = f["versions"]
    load_avg = f.get("loadavg_before_after")
    note = f"{versions['qmd']} on Node {versions['node']}; median of {f['runs']} interleaved runs" + (
        f"; load average {load_avg[0]:.1f} → {load_avg[1]:.1f}" if load_avg else ""
    )
    before = [
        f"{label} {m['base_wall_ratio']:.2f}× wall, {m['base_cpu_ratio']:.2f}× CPU"
        for key, label in PEER_STEPS.items()
        if "base_wall_ratio" in (m := f["measures"].get(key) or {})
    ]
    if before:  # `peers.py --base COMMIT`: that commit's specmem ran in the same rounds
        note += f". Against commit {versions['base']} in the same rounds: " + "; ".join(before)
    return table(
        [
            "step",
            "specmem wall / CPU s",
            "qmd wall / CPU s",
            "wall ratio",
            "CPU ratio",
            "peak RSS specmem / qmd",
        ],
        rows,
        "peers",
    ).replace("</sub>", f" {note}.</sub>", 1)


SCALE_ROWS = [
    ("first_index", "wall_s", "first index (keyword phase), wall", seconds),
    ("first_index", "cpu_s", "first index, CPU", seconds),
    ("first_index", "max_rss_mb", "first index, peak RSS", lambda v: f"{v:.0f} MB"),
    ("noop_rescan", "scan_s", "no-op rescan, the scan itself", seconds),
    ("noop_rescan", "wall_s", "no-op rescan, whole process", seconds),
    ("one_file_changed", "scan_s", "one file changed, the scan itself", seconds),
    ("one_file_changed", "wall_s", "one file changed, whole process", seconds),
    (
        "search_inprocess_surfaced",
        "p50_ms",
        "keyword search p50, in-process, as users get it",
        lambda v: f"{ms(v)} ms",
    ),
    (
        "search_inprocess_surfaced",
        "p95_ms",
        "keyword search p95, in-process, as users get it",
        lambda v: f"{ms(v)} ms",
    ),
    (
        "search_inprocess",
        "p50_ms",
        "… listing every rule (a session's first search)",
        lambda v: f"{ms(v)} ms",
    ),
    ("search_cli", "wall_s", "keyword search, one CLI process", seconds),
]


@renderer("scale")
def scale() -> str:
    f = load("scale")["figures"]
    sizes = sorted(f["sizes"], key=int)
    rows = []
    for part, key, label, fmt in SCALE_ROWS:
        values = [f["sizes"][n].get(part, {}).get(key) for n in sizes]
        if any(v is None for v in values):
            continue
        known = [(int(n), v) for n, v in zip(sizes, values, strict=True) if v > 0]
        exponent = ""
        if len(known) >= 2:
            (n0, v0), (n1, v1) = known[0], known[-1]
            exponent = f"{math.log(v1 / v0) / math.log(n1 / n0):.2f}"
        rows.append([label, *(fmt(v) for v in values), exponent])
    header = ["measure", *(f"{int(n):,} files" for n in sizes), "growth exponent"]
    return table(header, rows, "scale")


@renderer("vectors")
def vectors() -> str:
    f = load("vectors")["figures"]
    rows = [
        [
            f"{int(n):,}",
            f"{ms(v['sqlite_vec_p50_ms'])} ms",
            f"{ms(v['index_semantic_p50_ms'])} ms",
            f"{v['index_same_as_sqlite_vec_share']:.0%}",
            f"{ms(v['hybrid_sqlite_vec_p50_ms'])} / {ms(v['hybrid_sqlite_vec_cpu_p50_ms'])} ms",
            f"{ms(v['hybrid_in_memory_p50_ms'])} / {ms(v['hybrid_in_memory_cpu_p50_ms'])} ms",
            f"{v['index_mb']:.0f} MB, {v['index_load_cpu_s']:.1f} CPU s",
            f"{ms(v['index_refresh_one_memory_cpu_ms'])} ms",
        ]
        for n, v in sorted(f["sizes"].items(), key=lambda item: int(item[0]))
    ]
    return table(
        [
            "chunks",
            "nearest chunks p50: sqlite-vec",
            "in-memory",
            "same results",
            "hybrid search p50 wall / CPU: sqlite-vec",
            "in-memory",
            "matrix: size, first load",
            "refresh after one memory changed, CPU",
        ],
        rows,
        "vectors",
    )


@renderer("hybrid-ab")
def hybrid_ab() -> str:
    f = load("hybrid_ab")["figures"]
    labels = {
        "before": "before: frequencies counted at each search, then the matrix's k-NN",
        "counts_kept": "document frequencies kept by the connection",
        "now": "and the matrix's k-NN in a thread during the keyword side (now)",
    }
    rows = [
        [
            label,
            f"{ms(f[name]['wall_p50_ms'])} / {ms(f[name]['wall_p95_ms'])} ms",
            f"{ms(f[name]['cpu_p50_ms'])} / {ms(f[name]['cpu_p95_ms'])} ms",
            "1"
            if name == "before"
            else f"{f[name + '_wall_p50_ratio']:.2f} / {f[name + '_cpu_p50_ratio']:.2f}",
        ]
        for name, label in labels.items()
    ]
    load_avg = f["loadavg_before_after"]
    note = (
        f"{f['chunks']:,} chunks, {f['queries']} queries in turns, same results {f['same_results_share']:.0%}; "
        f"load average {load_avg[0]:.1f} → {load_avg[1]:.1f}"
    )
    return table(
        ["hybrid search, in-memory vectors", "wall p50 / p95", "CPU p50 / p95", "p50 vs before: wall / CPU"],
        rows,
        "hybrid_ab",
    ).replace("</sub>", f" {note}.</sub>", 1)


@renderer("embed")
def embed() -> str:
    f = load("embed")["figures"]
    rows = []
    for setting, label in (("threads_1", "1 thread"), ("threads_default", "default threads")):
        t = f[setting]
        for key, name in (
            ("torch_raw", "torch, raw `encode`"),
            ("torch_pipeline", "torch, specmem's pipeline"),
            ("onnx_raw", "ONNX, raw"),
            ("onnx_pipeline", "ONNX, specmem's pipeline"),
        ):
            m = t[key]
            ratio = m.get("vs_torch_raw")
            rows.append(
                [
                    label,
                    name,
                    f"{m['chunks_per_s']:.1f}",
                    f"{m['chunks_per_cpu_s']:.1f}",
                    "1" if ratio is None else f"{ratio:.2f}",
                    f"{m['cosine_min']:.7f}" if "cosine_min" in m else "",
                ]
            )
    return table(
        ["threads", "encoder", "chunks/s", "chunks per CPU s", "÷ torch raw", "min cosine to torch"],
        rows,
        "embed",
    )


STARTUP_STEPS = {
    "version": "`specmem --version`",
    "help": "`specmem --help`",
    "keyword_search_cli": "`specmem search --mode keyword …` (2,000 files)",
    "serve_to_tools_list": "`specmem serve` spawned → `tools/list` answered (`SPECMEM_WATCH=0`)",
    "serve_to_tools_list_watching": "`specmem serve` spawned → `tools/list` answered (hosting the watcher)",
}


@renderer("citations")
def citations() -> str:
    f = load("citations")["figures"]
    rows = []
    for key in sorted((k for k in f if k.startswith("spread_")), key=lambda k: int(k.split("_")[1])):
        c = f[key]
        rows.append(
            [
                f"{c['citations']:,} citations of {c['cited_files']:,} files",
                f"{ms(c['plain_noop_ms'])} → {ms(c['cited_noop_ms'])} ms (**×{c['noop_ratio']:.2f}**)",
                f"{ms(c['plain_noop_cpu_ms'])} → {ms(c['cited_noop_cpu_ms'])} ms (×{c['noop_cpu_ratio']:.2f})",
                f"{ms(c['one_cited_file_edited_ms'])} ms",
                f"{c['plain_first_index_s']:.1f} → {c['cited_first_index_s']:.1f} s",
            ]
        )
    header = [
        f"{f['memories']:,} memories with",
        "no-op rescan, wall: none → these",
        "… CPU",
        "rescan after one cited file changed",
        "first index",
    ]
    return table(header, rows, "citations")


@renderer("startup")
def startup() -> str:
    f = load("startup")["figures"]
    rows = []
    for key, label in STARTUP_STEPS.items():
        m = f["measures"].get(key)
        if m is None:
            continue
        heavy = f.get("heavy_imports", {}).get(key)
        rows.append(
            [
                label,
                f"{m['wall_s']:.2f} s",
                f"{m['cpu_s']:.2f} s",
                "" if heavy is None else (", ".join(heavy) or "none"),
            ]
        )
    load_avg = f.get("loadavg_before_after")
    note = f"median of {f['runs']} runs" + (
        f"; load average {load_avg[0]:.1f} → {load_avg[1]:.1f}" if load_avg else ""
    )
    return table(["step", "wall", "CPU", "heavy modules imported"], rows, "startup").replace(
        "</sub>", f" {note}.</sub>", 1
    )


def render(text: str) -> str:
    """`text` with every marked block rewritten from the recorded results."""

    def block(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in RENDERERS:
            raise ResultsError(f"README block `bench:{name}` has no renderer in {Path(__file__).name}")
        return f"<!-- bench:{name} -->{RENDERERS[name]()}<!-- /bench -->"

    return BLOCK.sub(block, text)


@renderer("numerics")
def numerics() -> str:
    f = load("numerics")["figures"]
    rows = [
        [
            name,
            f"{v['speed_vs_fp32']:.2f}×",
            f"{v['cosine_min']:.4f} / {v['cosine_p1']:.4f} / {v['cosine_mean']:.4f}",
            "yes" if v["meets_bound"] else ("reference" if name == "fp32" else "no"),
        ]
        for name, v in f["variants"].items()
    ]
    load_avg = f["loadavg_before_after"]
    note = (
        f"{f['chunks']} chunks of {len(f['corpora'])} corpora, {f['rounds']} rounds, one thread; CPU flags "
        f"{' '.join(f['cpu_flags'] or ['unknown'])}; load average {load_avg[0]:.1f} → {load_avg[1]:.1f}"
    )
    return table(
        ["graph", "speed vs fp32 (CPU time)", "cosine to fp32 min / 1st pct / mean", "meets the bound"],
        rows,
        "numerics",
    ).replace("</sub>", f" {note}.</sub>", 1)


@renderer("first-embedding")
def first_embedding() -> str:
    f = load("first_embedding")["figures"]
    rows = []
    for kind, label in (("watch", "`specmem watch`"), ("server", "`specmem serve` hosting the watcher")):
        for variant, name in (("base", f"commit {f['base']}"), ("this", "this tree")):
            m = f[f"{kind}_{variant}"]
            rows.append(
                [
                    label,
                    name,
                    seconds(m["first_embedding_s"]),
                    f"{m['rss_mb']:.0f} MB",
                    f"{m['peak_rss_mb']:.0f} MB",
                ]
            )
    load_avg = f["loadavg_before_after"]
    note = f"median of {f['rounds']} rounds in turns; load average {load_avg[0]:.1f} → {load_avg[1]:.1f}"
    return table(
        ["process", "code", "first embedding after ready", "RSS", "peak RSS"], rows, "first_embedding"
    ).replace("</sub>", f" {note}.</sub>", 1)


# One run per set (`--only SET --record-as retrieval_pg_SET`): the sets ran side by side on a loaded machine.
PG_RETRIEVAL = ("retrieval_pg_cranfield", "retrieval_pg_locomo-dev", "retrieval_pg_scifact-train")


@renderer("pg-retrieval")
def pg_retrieval() -> str:
    """nDCG@10 on each development set, SQLite and PostgreSQL, with the difference (target: within 0.01)."""
    rows = []
    for source in PG_RETRIEVAL:
        f = load(source)["figures"]
        for name, modes in f["sqlite"].items():
            for mode in ("keyword", "semantic", "hybrid"):
                a, b = modes[mode]["all"]["ndcg@10"], f["postgres"][name][mode]["all"]["ndcg@10"]
                label = f"{name} ({modes[mode]['all']['queries']})"
                rows.append([label, mode, f"{a:.4f}", f"{b:.4f}", f"{b - a:+.4f}"])
    return table(["set (queries)", "mode", "SQLite", "PostgreSQL", "difference"], rows, *PG_RETRIEVAL)


@renderer("pg-scale")
def pg_scale() -> str:
    f = load("pg_scale")["figures"]
    s, h = f["scan_one_project_s"], f["hybrid_search_ms"]
    rows = [
        [
            f"first index of one project ({f['files_per_project']} files)",
            f"{s['postgres_first_p50']:.2f} s",
            f"{s['sqlite_first']:.2f} s",
            f"{s['postgres_first_p50'] / s['sqlite_first']:.2f}×",
        ],
        [
            "no-op rescan",
            f"{s['postgres_noop_p50'] * 1000:.0f} ms",
            f"{s['sqlite_noop'] * 1000:.0f} ms",
            f"{s['postgres_noop_p50'] / s['sqlite_noop']:.2f}×",
        ],
        [
            "hybrid search, one project, p50 / p95",
            f"{ms(h['postgres_one_project']['p50'])} / {ms(h['postgres_one_project']['p95'])} ms",
            f"{ms(h['sqlite_one_project']['p50'])} / {ms(h['sqlite_one_project']['p95'])} ms",
            "",
        ],
        [
            f"hybrid search, all {f['projects']} projects ({f['chunks']:,} chunks), p50 / p95",
            f"{ms(h['postgres_all_projects']['p50'])} / {ms(h['postgres_all_projects']['p95'])} ms",
            "",
            "",
        ],
    ]
    note = f"load average {f['load']:.1f}"
    return table(["measure", "PostgreSQL", "SQLite", "ratio"], rows, "pg_scale").replace(
        ".</sub>", f"; {note}.</sub>", 1
    )


@renderer("pg-bulk")
def pg_bulk() -> str:
    f = load("pg_bulk")["figures"]
    h = f["hybrid_search_ms"]
    rows = [
        [
            "chunks (projects × chunks each)",
            f"{f['chunks']:,} ({f['projects']} × {f['chunks_per_project']:,})",
        ],
        ["database size", f"{f['database_mb']:,} MB"],
        ["bulk load (batch writer + embeddings), HNSW build", f"{f['load_s']} s, {f['hnsw_build_s']} s"],
    ]
    for key, label in (
        ("one_project", "hybrid, one project, one-shot (pgvector), p50 / p95"),
        ("one_project_server", "hybrid, one project, as a server (its vectors in memory), p50 / p95"),
        ("all_projects", "hybrid, all projects, p50 / p95"),
    ):
        rows.append([label, f"{ms(h[key]['p50'])} / {ms(h[key]['p95'])} ms"])
    return table(["measure", "value"], rows, "pg_bulk").replace(
        ".</sub>", f"; load average {f['load']:.1f}.</sub>", 1
    )


@renderer("pg-load")
def pg_load() -> str:
    f = load("pg_load")["figures"]
    rows = [
        [
            str(r["servers"]),
            str(r["clients"]),
            f"{r['seconds']:.0f} s",
            f"{r['calls']:,}",
            str(r["errors"]),
            f"{r['calls_per_s']:.1f}",
            f"{ms(r['latency_ms']['p50'])} / {ms(r['latency_ms']['p95'])} ms",
            f"{r['load']:.1f}",
        ]
        for r in f["rounds"]
    ]
    header = ["servers", "clients", "for", "searches", "errors", "searches/s", "p50 / p95", "load average"]
    return table(header, rows, "pg_load").replace(
        ".</sub>", f"; {f['files']} files, model {f['model']}.</sub>", 1
    )


def main() -> int:
    return readme_block.main(
        __doc__, render, "benchmark figures rewritten from tests/bench/results/", failures=(ResultsError,)
    )


if __name__ == "__main__":
    sys.exit(main())
