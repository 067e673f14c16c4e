"""A seeded generator of realistic memory corpora, so that tests need nothing beside the clone.

    memories = write_corpus(tmp_path / "specs", n=1000, seed=7)

Spec folders `NNN-slug/memory/<date>-<slug>.md` (with a `spec.md` beside some), a `constitutional/` folder,
YAML frontmatter with every importance tier (snake_case and Spec Kit's camelCase keys, a few TOML blocks),
context types, trigger phrases (in the frontmatter and in `## Trigger Phrases` sections), tags, `expires` dates,
nested headings, code fences (holding lines that look like headings or tier lines but are not), tables, anchors,
some CRLF files, a BOM, and a few malformed frontmatter blocks. Sizes run from one line to a few KB.

Each file comes with what specmem should make of it (title, tier, context type, trigger phrases, tags, expires,
anchors), so tests can check the result and not only that nothing raised. The same seed always gives the same
bytes. The first files of every corpus cover every feature, so even a corpus of 20 files has them all.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from specmem.indexer.tiers import TIERS

CONTEXT_TYPES = ("decision", "context", "convention", "research", "implementation", "discovery", "session")
MALFORMED = ("yaml", "unclosed", "not-mapping", "go-template")
SNAKE_KEYS = ("importance_tier", "context_type", "trigger_phrases")


@dataclass(frozen=True)
class Memory:
    """One generated file and what specmem should read from it."""

    rel_path: str  # relative to the root the corpus was written to
    data: bytes
    title: str
    tier: str
    context_type: str | None = None
    trigger_phrases: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    expires: str | None = None
    anchors: tuple[str, ...] = ()
    malformed: str | None = None  # one of MALFORMED: the frontmatter is broken and a warning is due
    crlf: bool = False
    bom: bool = False
    features: frozenset[str] = field(default_factory=frozenset)

    @property
    def spec_folder(self) -> str:
        parts = self.rel_path.split("/")[:-1]
        return "/".join(parts[: parts.index("memory")] if "memory" in parts else parts)


TOPICS: dict[str, dict[str, list[str]]] = {
    "auth": {
        "terms": ["access token", "refresh token", "session cookie", "password hash", "login rate limit"],
        "tech": ["argon2", "bcrypt", "PASETO", "Keycloak", "WebAuthn"],
        "tags": ["auth", "security", "tokens"],
    },
    "database": {
        "terms": ["write-ahead log", "connection pool", "schema migration", "read replica", "busy timeout"],
        "tech": ["SQLite", "PostgreSQL", "apsw", "pgbouncer", "Litestream"],
        "tags": ["database", "sqlite", "migrations"],
    },
    "search": {
        "terms": ["keyword index", "embedding cache", "ranking weight", "query parser", "result snippet"],
        "tech": ["FTS5", "sqlite-vec", "BM25", "MiniLM", "reciprocal rank fusion"],
        "tags": ["search", "ranking", "embeddings"],
    },
    "deploy": {
        "terms": ["release branch", "container image", "rollback plan", "health check", "blue-green switch"],
        "tech": ["Docker", "systemd", "Kubernetes", "Nomad", "GitHub Actions"],
        "tags": ["deploy", "ci", "release"],
    },
    "cache": {
        "terms": ["cache key", "eviction policy", "stale read", "warm-up job", "invalidation message"],
        "tech": ["Redis", "memcached", "an LRU dict", "Varnish", "a CDN"],
        "tags": ["cache", "performance"],
    },
    "api": {
        "terms": [
            "pagination cursor",
            "error envelope",
            "rate limit header",
            "idempotency key",
            "webhook retry",
        ],
        "tech": ["OpenAPI", "gRPC", "JSON-RPC", "FastAPI", "pydantic"],
        "tags": ["api", "http", "contracts"],
    },
    "watcher": {
        "terms": ["debounce window", "rename event", "inotify watch", "editor swap file", "branch switch"],
        "tech": ["watchdog", "inotify", "FSEvents", "polling", "watchfiles"],
        "tags": ["watcher", "files", "events"],
    },
    "testing": {
        "terms": ["fixture corpus", "flaky test", "property test", "crash test", "integration suite"],
        "tech": ["pytest", "hypothesis", "tox", "coverage.py", "a seeded generator"],
        "tags": ["testing", "quality"],
    },
}
REASONS = [
    "it keeps the write path simple",
    "it needs no extra daemon",
    "the team already runs it in production",
    "it survives a restart without losing state",
    "its API has been stable for years",
    "the benchmark showed half the latency",
    "it works offline on every platform we support",
    "reviewers can read the whole thing in one sitting",
]
CONSTRAINTS = [
    "expire after 15 minutes",
    "be rotated every 90 days",
    "stay under 1 MB",
    "never be logged",
    "be idempotent",
    "be written in one transaction",
    "fit on one screen",
    "survive a kill -9",
]
CONSEQUENCES = [
    "clients retry forever",
    "the index drifts from the files",
    "a reader blocks the writer",
    "the on-call engineer gets paged at night",
    "the release has to be rolled back",
    "search results go stale",
]
SECTIONS = ["Context", "Decision", "Consequences", "Alternatives considered", "Notes", "Open questions"]
SUBSECTIONS = ["Option A", "Option B", "Measurements", "Failure modes", "Migration steps", "Follow-ups"]
RESERVED = {
    "yes",
    "no",
    "on",
    "off",
    "true",
    "false",
    "null",
    "none",
    "y",
    "n",
}  # YAML would not read these as text


def _yaml_scalar(text: str) -> str:
    """A plain scalar when YAML reads it back as the same text, else a double-quoted one."""
    if re.fullmatch(r"[A-Za-z][\w .,()/'-]*", text) and ": " not in text and text.lower() not in RESERVED:
        return text
    return json.dumps(text)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:48].strip("-")


class _Writer:
    """Builds the body of one memory from one topic, with a seeded Random."""

    def __init__(self, rng: random.Random, topic: str) -> None:
        self.rng = rng
        self.t = TOPICS[topic]

    def term(self) -> str:
        return self.rng.choice(self.t["terms"])

    def tech(self) -> str:
        return self.rng.choice(self.t["tech"])

    def sentence(self) -> str:
        r = self.rng
        forms = [
            lambda: f"We chose {self.tech()} for the {self.term()} because {r.choice(REASONS)}.",
            lambda: f"The {self.term()} must {r.choice(CONSTRAINTS)}; otherwise {r.choice(CONSEQUENCES)}.",
            lambda: (
                f"{self.tech()} measured {r.randint(2, 900)} ms at p95 for the {self.term()} under "
                f"{r.randint(5, 400)} requests per second."
            ),
            lambda: f"Do not bypass the {self.term()}: {r.choice(CONSEQUENCES)} when it is skipped.",
            lambda: (
                f"See `src/{_slug(self.term())}.py` for how the {self.term()} is set up with {self.tech()}."
            ),
            lambda: f"Open question: should the {self.term()} move to {self.tech()} next quarter?",
            lambda: (
                f"Since {r.choice(['March', 'June', 'September', 'December'])} the {self.term()} uses "
                f"{self.tech()}, and {r.choice(CONSEQUENCES)} no longer."
            ),
        ]
        return r.choice(forms)()

    def paragraph(self, sentences: int) -> str:
        return " ".join(self.sentence() for _ in range(sentences))

    def code(self, trap: bool) -> list[str]:
        """A fenced block; a `trap` holds lines that would be a tier line and a trigger list outside it."""
        r = self.rng
        fence = r.choice(["```", "```", "~~~"])
        name = _slug(self.term())
        if trap:
            kind = "yaml"
            body = [
                f"# {name} settings",
                "importance_tier: critical",
                "## Trigger Phrases",
                "- not a trigger",
            ]
        else:
            kind = r.choice(["bash", "python", "sql", "yaml", ""])
            body = {
                "bash": [
                    f"# rebuild the {self.term()}",
                    f"{name.replace('-', '_')}=1 make {name}",
                    "echo done",
                ],
                "python": [
                    f"def {name.replace('-', '_')}(conn):",
                    f'    """The {self.term()}."""',
                    f"    return conn.execute({name!r}).fetchall()",
                ],
                "sql": [f"SELECT id, title FROM memory_index WHERE spec_folder = '{name}';"],
                "yaml": [f"{name}:", f"  backend: {_slug(self.tech())}", f"  limit: {r.randint(1, 99)}"],
                "": [f"$ specmem search '{self.term()}'", f"{r.randint(1, 9)} results"],
            }[kind]
        return [f"{fence}{kind}", *body, fence]

    def table(self) -> list[str]:
        rows = ["| option | p95 ms | notes |", "|---|---|---|"]
        for _ in range(self.rng.randint(2, 4)):
            rows.append(f"| {self.tech()} | {self.rng.randint(1, 500)} | {self.rng.choice(REASONS)} |")
        return rows


def _plan(n: int, rng: random.Random) -> list[dict]:
    """What each file gets. The first files cover every feature; the rest are drawn at random."""
    must: list[dict] = [{"tier": t} for t in TIERS]
    must += [{"malformed": m} for m in MALFORMED]
    must += [
        {"crlf": True},
        {"bom": True},
        {"bom": True, "crlf": True},
        {"camel": True},
        {"toml": True},
        {"body_tier": "important"},
        {"no_frontmatter": True},
        {"no_title": True},
        {"empty_body": True},
        {"size": "large", "anchors": 2},
        {"size": "tiny"},
        {"constitutional": True},
        {"constitutional": True, "tier": "normal"},
    ]
    plan = []
    for i in range(n):
        spec = dict(must[i]) if i < len(must) else {}
        x = rng.random()
        spec.setdefault(
            "size", "tiny" if x < 0.15 else "small" if x < 0.55 else "medium" if x < 0.9 else "large"
        )
        if i >= len(must):
            roll = rng.random()
            if roll < 0.05:
                spec["crlf"] = True
            elif roll < 0.055:
                spec["bom"] = True
            elif roll < 0.06:
                spec["malformed"] = rng.choice(MALFORMED)
            elif roll < 0.08:
                spec["camel"] = True
            elif roll < 0.09:
                spec["toml"] = True
            elif roll < 0.11:
                spec["body_tier"] = rng.choice(TIERS)
            elif roll < 0.14:
                spec["no_frontmatter"] = True
            elif roll < 0.16:
                spec["constitutional"] = True
        plan.append(spec)
    return plan


def generate(n: int = 1000, seed: int = 0) -> list[Memory]:
    """`n` memory files (with a `spec.md` for some spec folders), the same for the same seed."""
    rng = random.Random(seed)
    plan = _plan(n, rng)
    folders: list[tuple[str, str]] = []  # (folder name, topic)
    for k in range(max(1, n // 12)):
        topic = rng.choice(sorted(TOPICS))
        words = rng.sample(TOPICS[topic]["terms"], 1)[0]
        folders.append((f"{k + 1:03d}-{_slug(topic + ' ' + words)}", topic))
    used: set[str] = set()
    out: list[Memory] = []
    spec_md_left = max(0, n // 40)
    for i, spec in enumerate(plan):
        folder, topic = folders[rng.randrange(len(folders))]
        file_rng = random.Random(f"{seed}/{i}")
        if spec.get("constitutional"):
            parent, topic = "constitutional", rng.choice(sorted(TOPICS))
        elif spec_md_left and i >= 30 and not spec.get("malformed") and f"{folder}/spec.md" not in used:
            spec_md_left -= 1
            used.add(f"{folder}/spec.md")
            out.append(_memory(file_rng, spec | {"spec_md": True}, topic, f"{folder}/spec.md"))
            continue
        else:
            parent = f"{folder}/memory"
        day = date(2025, 1, 1) + timedelta(days=rng.randint(0, 700))
        stem = f"{day.isoformat()}-{_slug(_title(_Writer(random.Random(f'{seed}/{i}'), topic)))}"
        name, k = f"{parent}/{stem}.md", 2
        while name in used:
            name, k = f"{parent}/{stem}-{k}.md", k + 1
        used.add(name)
        out.append(_memory(file_rng, spec, topic, name))
    return out


def _title(w: _Writer) -> str:
    """The first draws from a file's Random, so the file name can be made from the title before the file."""
    r = w.rng
    term, tech = w.term(), w.tech()
    return r.choice(
        [
            f"Use {tech} for the {term}",
            f"The {term} must {r.choice(CONSTRAINTS)}",
            f"Why {tech} and not {w.tech()} for the {term}",
            f"{term.capitalize()} notes from the {r.choice(['spring', 'autumn'])} review",
            f"How the {term} works",
        ]
    )


def _body(w: _Writer, spec: dict, title: str) -> tuple[list[str], str | None, list[str], list[str]]:
    """Body lines, the level-1 heading (None without one), anchor ids and `## Trigger Phrases` items."""
    r, size = w.rng, spec["size"]
    if spec.get("empty_body"):
        return [], None, [], []
    term = w.term()
    heading = None if spec.get("no_title") else title if r.random() < 0.7 else term.capitalize()
    body = [f"# {heading}" if heading else f"## {term.capitalize()}", ""]
    if spec.get("body_tier"):
        tier = spec["body_tier"]
        body += [r.choice([f"**Importance Tier:** {tier}", f"[IMPORTANCE_TIER: {tier}]"]), ""]
    body += [w.sentence()] if size == "tiny" else [w.paragraph(r.randint(1, 3)), ""]
    sections = {"tiny": 0, "small": r.randint(1, 2), "medium": r.randint(3, 5), "large": r.randint(6, 9)}[
        size
    ]
    want_anchors = spec.get("anchors", int(size in ("medium", "large") and r.random() < 0.3))
    anchors: list[str] = []
    for k in range(sections):
        name = SECTIONS[k % len(SECTIONS)] + ("" if k < len(SECTIONS) else f" {k}")
        anchor = None
        if len(anchors) < want_anchors:
            anchor = _slug(name) + (f"-{len(anchors)}" if anchors else "")
            anchors.append(anchor)
            body.append(f"<!-- ANCHOR:{anchor} -->")
        body += [f"## {name}", "", w.paragraph(r.randint(1, 4)), ""]
        if size == "large" or r.random() < 0.3:
            for sub in r.sample(SUBSECTIONS, r.randint(1, 2)):
                body += [f"### {sub}: {w.tech()}", "", w.paragraph(r.randint(1, 3)), ""]
                if size == "large" and r.random() < 0.5:
                    body += ["#### Details", "", f"- {w.sentence()}", f"- {w.sentence()}", ""]
        if r.random() < 0.35 or (size == "large" and k == 1):
            body += [*w.code(trap=r.random() < 0.15), ""]
        if r.random() < 0.15:
            body += [*w.table(), ""]
        if anchor:
            body += [f"<!-- /ANCHOR:{anchor} -->", ""]
    triggers: list[str] = []
    if size != "tiny" and r.random() < 0.3:
        triggers = list(dict.fromkeys([f"{w.term()} policy", f"{w.tech().lower()} limits"]))
        body += ["## Trigger Phrases", "", *[f"- {p}" for p in triggers], ""]
    return body, heading, anchors, triggers


def _memory(rng: random.Random, spec: dict, topic: str, rel_path: str) -> Memory:
    """One file from its plan, and what specmem should read from it (by the README's "Memory files" rules)."""
    w = _Writer(rng, topic)
    title = _title(w)
    constitutional, malformed = spec.get("constitutional", False), spec.get("malformed")
    if "tier" in spec:
        tier = spec["tier"]
    elif constitutional:
        tier = "constitutional"
    else:
        tier = rng.choices(TIERS, weights=[1, 6, 10, 30, 4, 3])[0]
    context_type = rng.choice([*CONTEXT_TYPES, None])
    tags = rng.sample(TOPICS[topic]["tags"], rng.randint(0, len(TOPICS[topic]["tags"])))
    fm_triggers = list(dict.fromkeys([w.term(), f"{w.tech().lower()} setup"][: rng.randint(1, 2)]))
    expires = rng.choice(["2024-03-01", "2099-12-31", None]) if tier == "temporary" else None
    body, heading, anchors, section_triggers = _body(w, spec, title)

    has_fm = not spec.get("no_frontmatter", False)
    title_in_fm = has_fm and not spec.get("no_title") and (rng.random() < 0.85 or spec.get("empty_body"))
    if "tier" in spec:
        tier_in_fm = True
    elif constitutional:
        tier_in_fm = rng.random() < 0.5  # the folder gives the tier either way
    else:
        tier_in_fm = not spec.get("body_tier") and (tier != "normal" or rng.random() < 0.5)
    fm: list[str] = []
    fence = "---"
    if malformed == "yaml":
        fm = [f"title: [{title}", f"importance_tier: {tier}", "tags: x"]
    elif malformed == "go-template":  # a Hugo archetype
        fm = ['title: "{{ replace .Name "-" " " | title }}"', "date: {{ .Date }}", "draft: true"]
    elif malformed == "not-mapping":
        fm = [f"- {title}", f"- {tier}"]
    elif malformed == "unclosed":
        fm = [f"title: {_yaml_scalar(title)}", f"importance_tier: {tier}"]
    elif has_fm and spec.get("toml"):
        fence, expires = "+++", None
        fm = [f"title = {json.dumps(title)}"] if title_in_fm else []
        fm += [f'importance_tier = "{tier}"'] if tier_in_fm else []
        fm += [f'context_type = "{context_type}"'] if context_type else []
        fm += [f"trigger_phrases = {json.dumps(fm_triggers)}", f"tags = {json.dumps(tags)}"]
    elif has_fm:
        camel = spec.get("camel", False)
        keys = ("importanceTier", "contextType", "triggerPhrases") if camel else SNAKE_KEYS
        fm += [f"title: {_yaml_scalar(title)}"] if title_in_fm else []
        fm += [f"{keys[0]}: {tier.upper() if rng.random() < 0.1 else tier}"] if tier_in_fm else []
        fm += [f"{keys[1]}: {context_type}"] if context_type else []
        if rng.random() < 0.5:
            fm.append(f"{keys[2]}: [{', '.join(map(_yaml_scalar, fm_triggers))}]")
        else:
            fm += [f"{keys[2]}:", *[f"  - {_yaml_scalar(p)}" for p in fm_triggers]]
        fm += [f"tags: [{', '.join(tags)}]"] if tags else []
        fm += [f"expires: {expires}"] if expires else []
        fm += [f"# reviewed by the {topic} owners"] if rng.random() < 0.2 else []  # a YAML comment
        fm += [f"owner: {topic}-team"] if rng.random() < 0.1 else []  # a key specmem does not read

    if malformed == "unclosed":
        lines = ["---", *fm, *body]
    elif fm:
        lines = [fence, *fm, fence, *body]
    else:
        lines = body
    text = "\n".join(lines) + "\n"
    crlf, bom = spec.get("crlf", False), spec.get("bom", False)
    if crlf:
        text = text.replace("\n", "\r\n")
    data = (b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8")

    meta = bool(fm) and not malformed  # the frontmatter is read
    if meta and tier_in_fm:
        expect_tier = tier
    elif spec.get("body_tier"):
        expect_tier = spec["body_tier"]
    elif malformed == "unclosed":
        expect_tier = tier  # an unclosed block is body, so its `importance_tier:` line is a body tier line
    else:
        expect_tier = "constitutional" if constitutional else "normal"
    triggers = fm_triggers if meta else []
    features = {k for k, v in spec.items() if v and k not in ("size", "tier")} | {f"size:{spec['size']}"}
    return Memory(
        rel_path=rel_path,
        data=data,
        title=title if meta and title_in_fm else heading or Path(rel_path).stem,
        tier=expect_tier,
        context_type=context_type if meta else None,
        trigger_phrases=tuple(triggers + [p for p in section_triggers if p not in triggers]),
        tags=tuple(tags) if meta else (),
        expires=expires if meta else None,
        anchors=tuple(anchors),
        malformed=malformed,
        crlf=crlf,
        bom=bom,
        features=frozenset(features),
    )


def write_corpus(root: Path, n: int = 1000, seed: int = 0) -> list[Memory]:
    """Write `generate(n, seed)` under `root` and return it."""
    memories = generate(n, seed)
    for m in memories:
        path = root / m.rel_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(m.data)
    return memories
