"""Every setting, resolved in one order: option, then SPECMEM_* environment variable, then the project's
`specmem.toml`, then a default. `resolve()` validates each value and remembers where it came from, so that
`specmem paths` can show it."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import platformdirs

from specmem.indexer import atomic
from specmem.indexer import conventions as conventions_mod
from specmem.indexer.errors import ConfigError, SpecmemError
from specmem.indexer.pg import is_url, redacted

if TYPE_CHECKING:
    from specmem.indexer.remembered import Scan

DEFAULT_MODEL = "all-MiniLM-L6-v2"
DEFAULT_MAX_FILE_BYTES = 5 * 1024 * 1024
DB_DIRNAME = ".specmem"
PROJECT_FILE = "specmem.toml"
MAX_PROJECT_FILE_BYTES = 1024 * 1024
SHOWN_CHARS = 80  # how much of a bad setting an error message quotes
FALSE_WORDS = ("0", "false", "no", "off")
TRUE_WORDS = ("1", "true", "yes", "on")
# A count, size or number of days beyond this is a typo, and would overflow SQLite or the clock.
MAX_SETTING = 2**31 - 1


@dataclass(frozen=True)
class Config:
    """Where the index and the memory files are, and how specmem behaves. Build it with `resolve()`."""

    project: Path
    db_path: Path
    roots: tuple[Path, ...]
    model: str = DEFAULT_MODEL
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    checkpoint_max: int = 50
    checkpoint_max_days: float = 90.0
    watch: bool = True
    threads: int | None = None
    surface_constitutional: int = 3
    search_wait: float = 15.0
    http_token: str | None = field(default=None, repr=False)
    http_origins: tuple[str, ...] = ()
    http_session_idle: float = 1800.0  # seconds without a request before an HTTP session ends
    conventions: tuple[str, ...] = conventions_mod.NAMES
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    # Roots added at the project top for the adopted conventions (CLAUDE.md, .kiro/steering, …); those that are
    # single files are also in `file_roots`.
    convention_roots: tuple[Path, ...] = ()
    file_roots: tuple[Path, ...] = ()
    # The roots are the project's own (specmem.toml or the default): a full scan searches the project for the
    # conventions' places below its top (indexer/places.py) and the settings read the ones it found.
    searches_project: bool = False
    project_file: Path | None = None
    # SPECMEM_DB=postgresql://…: the shared PostgreSQL index (db_path then only places the side files: locks,
    # scan progress), and this project's name in it (default: the project folder's, i.e. the repository's).
    db_url: str | None = field(default=None, repr=False)
    project_name: str | None = None
    # Other projects of a shared index that reads include unless a call names its own ("*": every project): a team
    # server started with SPECMEM_PROJECTS='*' searches, lists and serves the memories of every repository.
    projects: tuple[str, ...] = ()
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def index_name(self) -> str:
        """The index as messages name it: its file, or the PostgreSQL URL (password hidden) and this project."""
        return f"{redacted(self.db_url)} (project {self.index_project})" if self.db_url else str(self.db_path)

    @property
    def index_project(self) -> str:
        """The name of this project in a shared (PostgreSQL) index."""
        return self.project_name or self.project.name

    @property
    def signal_path(self) -> Path:
        return side_file(self.db_path, "updated")

    @property
    def watcher_lock_path(self) -> Path:
        return side_file(self.db_path, "watcher.lock")

    @property
    def watcher_status_path(self) -> Path:
        return side_file(self.db_path, "watcher.json")

    @property
    def scan_state_path(self) -> Path:
        return side_file(self.db_path, "scan.json")

    @property
    def write_lock_path(self) -> Path:
        return write_lock_of(self.db_path)

    @property
    def embed_lock_path(self) -> Path:
        return side_file(self.db_path, "embed.lock")

    def shown(self) -> list[tuple[str, str, str]]:
        """(setting, value, where it came from) for every setting, secrets masked."""
        rows = [
            ("project", str(self.project), "specmem.toml" if self.project_file else "found from the roots"),
            ("project file", str(self.project_file or "(none)"), ""),
        ]
        for setting in SETTINGS:
            name = setting.name
            value = getattr(self, _ATTR.get(name, name))
            if name == "roots":
                value = tuple(r for r in value if r not in self.convention_roots)
            if name == "http_token":
                text = "(set, hidden)" if value else "(none)"
            elif name == "database" and self.db_url:
                text = redacted(self.db_url)
            elif isinstance(value, tuple):
                text = ", ".join(str(v) for v in value) or "(none)"
            else:
                text = "(default)" if value is None else str(value)
            rows.append((name, text, self.sources.get(name, "default")))
            if name == "roots" and self.convention_roots:
                shown = ", ".join(str(r) for r in self.convention_roots)
                rows.append(("convention roots", shown, "the conventions' places in the project"))
        return rows


SIDE_FILES = ("updated", "write.lock", "watcher.lock", "watcher.json", "scan.json", "embed.lock")


def side_file(db_path: Path, suffix: str) -> Path:
    """One of the index's own files beside it, named after it as SQLite names its `-wal` and `-shm`
    (`index.db-scan.json`): the index may sit in a user's folder (SPECMEM_DB=~/notes/memory.db), whose files
    must never be touched, and two indexes in one folder must never share a lock or a progress file."""
    db_path = Path(db_path)
    return db_path.with_name(f"{db_path.name}-{suffix}")


def write_lock_of(db_path: Path) -> Path:
    """The lock file that serialises the writers of the index at `db_path`."""
    return side_file(db_path, "write.lock")


def _utf8_path(path: Path, what: str) -> None:
    """Paths are stored and shown as UTF-8 text: a name in another encoding (Latin-1 bytes) is refused here."""
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(text).decode("utf-8", "backslashreplace")
        raise ConfigError(
            f"the {what} {shown} has a name that is not UTF-8 (bytes shown as \\xNN); rename it to UTF-8 "
            "(e.g. `convmv -f latin1 -t utf8`)"
        ) from None


def _path_list(text: str) -> list[str]:
    return [p.strip() for p in text.split(os.pathsep) if p.strip()]


def _shown(value: Any) -> str:
    """A bad value as an error message quotes it: its repr, cut short (a setting may be a 100,000-item list)."""
    try:
        text = value if isinstance(value, BaseException) else repr(value)
        text = str(text)
    except ValueError:  # an integer of thousands of digits
        return "a number of thousands of digits"
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "…"


def _positive_int(value: Any, what: str) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ConfigError(f"{what}={_shown(value)} is not a whole number") from None
    if not 0 < number <= MAX_SETTING:
        raise ConfigError(f"{what} must be a positive whole number up to {MAX_SETTING}, not {_shown(number)}")
    return number


def _count(value: Any, what: str) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ConfigError(f"{what}={_shown(value)} is not a whole number") from None
    if not 0 <= number <= MAX_SETTING:
        raise ConfigError(f"{what} must be a whole number from 0 to {MAX_SETTING}, not {_shown(number)}")
    return number


def _positive_float(value: Any, what: str) -> float:
    try:
        number = float(str(value).strip())
    except ValueError:
        raise ConfigError(f"{what}={_shown(value)} is not a number") from None
    if not 0 < number <= MAX_SETTING:  # (not nan, not inf)
        raise ConfigError(f"{what} must be a positive number up to {MAX_SETTING}, not {number}")
    return number


def _seconds(value: Any, what: str) -> float:
    try:
        number = float(str(value).strip())
    except ValueError:
        raise ConfigError(f"{what}={_shown(value)} is not a number of seconds") from None
    if not number >= 0:
        raise ConfigError(f"{what} must be 0 or more seconds, not {number}")
    return number


def _bool(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise ConfigError(f"{what}={_shown(value)} is not on or off; use 1 or 0")


def _origins(value: Any, what: str) -> tuple[str, ...]:
    items = value if isinstance(value, list) else str(value).split(",")
    return tuple(str(o).strip() for o in items if str(o).strip())


def _words(value: Any, what: str) -> tuple[str, ...]:
    if isinstance(value, list):
        if not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{what} must be a list of texts, not {_shown(value)}")
        items = value
    elif isinstance(value, str):
        items = value.split(",")
    else:
        raise ConfigError(f'{what} must be a list of texts, e.g. ["a", "b"], not {_shown(value)}')
    return tuple(dict.fromkeys(v.strip() for v in items if v.strip()))


def _conventions(value: Any, what: str) -> tuple[str, ...]:
    if isinstance(value, bool):
        return conventions_mod.NAMES if value else ()
    if isinstance(value, str) and value.strip().lower() in ("none", *FALSE_WORDS):
        return ()
    if isinstance(value, str) and value.strip().lower() in ("all", *TRUE_WORDS):
        return conventions_mod.NAMES
    names = _words(value, what)
    unknown = [n for n in names if n not in conventions_mod.NAMES]
    if unknown:
        raise ConfigError(
            f"{what}: unknown convention(s) {', '.join(unknown)}; known: {', '.join(conventions_mod.NAMES)} "
            "(or none)"
        )
    return names


def _text(value: Any, what: str) -> str:
    text = os.fspath(value) if isinstance(value, os.PathLike) else value
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{what} must be a non-empty text, not {_shown(value)}")
    return text.strip()


class Setting(NamedTuple):
    name: str
    env: str
    key: str | None  # its key in specmem.toml; None: not settable there (a secret)
    parse: Callable[[Any, str], Any]
    help: str


SETTINGS = [
    Setting("database", "SPECMEM_DB", "db", _text, "the index file"),
    Setting("roots", "SPECMEM_ROOTS", "roots", _text, "folders of memory files"),
    Setting("project_name", "SPECMEM_PROJECT", "project", _text, "this project's name in a shared index"),
    Setting(
        "projects",
        "SPECMEM_PROJECTS",
        "projects",
        _words,
        "other projects of a shared index reads include ('*': all)",
    ),
    Setting("model", "SPECMEM_MODEL", "model", _text, "embedding model"),
    Setting(
        "max_file_bytes", "SPECMEM_MAX_FILE_BYTES", "max_file_bytes", _positive_int, "larger files: head only"
    ),
    Setting("checkpoint_max", "SPECMEM_CHECKPOINT_MAX", "checkpoint_max", _positive_int, "checkpoints kept"),
    Setting(
        "checkpoint_max_days",
        "SPECMEM_CHECKPOINT_MAX_DAYS",
        "checkpoint_max_days",
        _positive_float,
        "days kept",
    ),
    Setting("watch", "SPECMEM_WATCH", "watch", _bool, "servers host the watcher"),
    Setting("threads", "SPECMEM_THREADS", "threads", _positive_int, "embedding threads"),
    Setting(
        "surface_constitutional",
        "SPECMEM_SURFACE",
        "surface_constitutional",
        _count,
        "rules among a search's results",
    ),
    Setting(
        "search_wait",
        "SPECMEM_SEARCH_WAIT",
        "search_wait",
        _seconds,
        "a server's search waits this long for an index being built",
    ),
    Setting("http_token", "SPECMEM_HTTP_TOKEN", None, _text, "bearer token for HTTP"),
    Setting("http_origins", "SPECMEM_HTTP_ORIGINS", "http_origins", _origins, "extra allowed origins"),
    Setting(
        "http_session_idle",
        "SPECMEM_HTTP_SESSION_IDLE",
        "http_session_idle",
        _positive_float,
        "idle HTTP sessions end (s)",
    ),
    Setting(
        "conventions",
        "SPECMEM_CONVENTIONS",
        "conventions",
        _conventions,
        "assistants' memory places read (specmem init lists them)",
    ),
    Setting("include", "SPECMEM_INCLUDE", "include", _words, "hidden folders indexed anyway"),
    Setting("exclude", "SPECMEM_EXCLUDE", "exclude", _words, "extra ignore patterns"),
]
_ATTR = {"database": "db_path"}


def is_project(folder: Path) -> bool:
    """Whether `folder` holds `specmem.toml`, `.git` or `specs/`."""
    return (folder / PROJECT_FILE).is_file() or (folder / ".git").exists() or (folder / "specs").is_dir()


def shared(folder: Path) -> bool:
    """Whether `folder` is a temporary folder every user may write (world-writable and sticky: /tmp, /var/tmp,
    /dev/shm): what lies in it may be another user's, so it is never a project, and the search stops below it."""
    try:
        mode = os.stat(folder).st_mode
    except OSError:
        return False
    return bool(mode & stat.S_IWOTH and mode & stat.S_ISVTX)


def upwards(start: Path) -> list[Path]:
    """`start` and the folders above it where a project may be: up to, not into, a shared folder (/tmp)."""
    out: list[Path] = []
    for folder in (start, *start.parents):
        if shared(folder):
            break
        out.append(folder)
    return out


def find_project(start: Path | None = None) -> Path | None:
    """The nearest folder at or above `start` holding `specmem.toml`, `.git` or `specs/`, or None. A shared
    folder (world-writable, like /tmp) is never one: its `specs/` may be another user's."""
    start = (start or Path.cwd()).resolve()
    for folder in upwards(start):
        if is_project(folder):
            return folder
    return None


def find_project_file(start: Path) -> Path | None:
    """The nearest `specmem.toml` at or above `start`, stopping at the repository top (and below a shared
    folder such as /tmp, where anybody may put one)."""
    for folder in upwards(start):
        if (folder / PROJECT_FILE).is_file():
            return folder / PROJECT_FILE
        if (folder / ".git").exists():
            return None
    return None


def read_project_file(path: Path) -> dict[str, Any]:
    """The settings in a `specmem.toml`; unknown keys and bad TOML are errors that name the file. Bounded: a file
    over 1 MB, nested deeper than settings ever are, or holding a number Python cannot read is refused."""
    from specmem.indexer.parse import MAX_NESTING, bracket_depth

    try:
        raw, _ = atomic.read_regular(path, MAX_PROJECT_FILE_BYTES + 1)  # (a FIFO there must not hang us)
        text = raw.decode("utf-8").removeprefix("\ufeff")  # a BOM, as some Windows editors save
    except (OSError, UnicodeDecodeError, SpecmemError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    if len(raw) > MAX_PROJECT_FILE_BYTES:
        raise ConfigError(
            f"{path} is over {MAX_PROJECT_FILE_BYTES // 1024 // 1024} MB; settings fit in a few lines: fix it"
        )
    if bracket_depth(text) > MAX_NESTING:
        raise ConfigError(
            f"{path} nests lists or tables more than {MAX_NESTING} deep; settings never do: fix it"
        )
    try:
        import tomllib  # only when a project file exists (~3 ms of every command otherwise)

        data = tomllib.loads(text)
    except (ValueError, RecursionError) as exc:  # TOMLDecodeError, or a number of thousands of digits
        raise ConfigError(f"{path} is not valid TOML ({_shown(exc)}); fix it or delete it") from None
    known = {s.key for s in SETTINGS if s.key}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"{path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    return data


def user_data_dir() -> Path:
    """Where specmem keeps data that belongs to the user rather than to a project (symlinks the user made on the
    way resolved here, once: the folder is then opened as one of specmem's own, never through a symlink)."""
    return Path(platformdirs.user_data_dir("specmem", appauthor=False)).resolve()


def missing_index(config: Config) -> str:
    """What to say when there is no index: the roots and the databases looked at, and what to run."""
    from specmem.indexer.remembered import remembered_for  # (it imports this module)

    roots = ", ".join(str(r) for r in config.roots)
    looked = [f"{config.db_path} (database: {config.sources.get('database', 'default')})"]
    remembered = remembered_for(Path.cwd().resolve())
    if remembered is not None and remembered.db != config.db_path:
        looked.append(f"{remembered.db} (remembered from `specmem scan` in {remembered.folder})")
    elif remembered is None and config.project_file is None:
        looked.append(f"no scan remembered for {Path.cwd()}")
    return (
        f"no index yet for roots {roots} (roots: {config.sources.get('roots', 'default')}); looked at "
        f"{'; '.join(looked)}; run `specmem scan` first to index these roots (`specmem scan DIR` for another "
        "folder, `specmem init` to set up this project)"
    )


def user_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where specmem keeps files it can always make again (the ONNX model): SPECMEM_CACHE_DIR, else the user cache."""
    env = os.environ if env is None else env
    if env.get("SPECMEM_CACHE_DIR"):
        return Path(env["SPECMEM_CACHE_DIR"]).expanduser().resolve()
    return Path(platformdirs.user_cache_dir("specmem", appauthor=False)).resolve()


def _given_roots(
    roots: Sequence[str | os.PathLike[str]] | None, env: Mapping[str, str], cwd: Path, sources: dict[str, str]
) -> list[Path]:
    """The roots given for this run: as options, else in SPECMEM_ROOTS; [] when neither."""
    if roots:
        sources["roots"] = "option"
        return [cwd / Path(r).expanduser() for r in roots]
    if env.get("SPECMEM_ROOTS", "").strip():
        sources["roots"] = "env SPECMEM_ROOTS"
        return [cwd / Path(r).expanduser() for r in _path_list(env["SPECMEM_ROOTS"])]
    return []


def _file_roots(project_file: Path, listed: object) -> list[Path]:
    """The roots `specmem.toml` lists, relative to its folder."""
    if not isinstance(listed, list) or not all(isinstance(r, str) and r.strip() for r in listed):
        raise ConfigError(f'{project_file}: roots must be a list of folders, e.g. roots = ["specs"]')
    return [project_file.parent / Path(r).expanduser() for r in listed]


def _settings(
    options: dict[str, Any],
    env: Mapping[str, str],
    file_settings: dict[str, Any],
    project_file: Path | None,
    sources: dict[str, str],
) -> dict[str, Any]:
    """Every setting but the roots, parsed, from the first place that sets it (recorded in `sources`)."""
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        name = setting.name
        if name == "roots":
            continue
        if options.get(name) is not None:
            raw, source = options[name], "option"
        elif env.get(setting.env, "").strip():
            raw, source = env[setting.env], f"env {setting.env}"
        elif setting.key is not None and setting.key in file_settings:
            raw, source = file_settings[setting.key], str(project_file)
        else:
            continue
        what = setting.env if source.startswith("env") else name
        values[name] = setting.parse(raw, f"{project_file}: {name}" if source == str(project_file) else what)
        sources[name] = source
    if "threads" not in values and env.get("OMP_NUM_THREADS", "").strip():
        values["threads"] = _positive_int(env["OMP_NUM_THREADS"], "OMP_NUM_THREADS")
        sources["threads"] = "env OMP_NUM_THREADS"
    return values


def _db_path(
    values: dict[str, Any],
    sources: dict[str, str],
    project_file: Path | None,
    project: Path | None,
    remembered: Scan | None,
    roots: tuple[Path, ...],
    cwd: Path,
) -> Path:
    """The index: as set (relative to where it was set), else the remembered scan's, else the project's, else
    one in the user's data folder named after the first root."""
    if is_url(values.get("database")):
        values["db_url"] = values.pop("database")  # the side files stay where the project's index would be
    elif "database" in values:
        base = project_file.parent if sources["database"] == str(project_file) and project_file else cwd
        return (base / Path(values.pop("database")).expanduser()).resolve()
    if remembered is not None:
        sources.setdefault("database", sources["roots"])
        return remembered.db
    if project is not None:
        return project / DB_DIRNAME / "index.db"
    # Outside any project: keep the index out of the user's folders.
    import hashlib

    slug = hashlib.sha1(str(roots[0]).encode()).hexdigest()[:12]
    return user_data_dir() / "indexes" / f"{roots[0].name}-{slug}" / "index.db"


def resolve(
    *,
    db: str | os.PathLike[str] | None = None,
    roots: Sequence[str | os.PathLike[str]] | None = None,
    model: str | None = None,
    max_file_bytes: int | None = None,
    watch: bool | None = None,
    threads: int | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Config:
    """Resolve every setting in one order: option, then environment, then `specmem.toml`, then default."""
    env = os.environ if env is None else env
    cwd = (cwd or Path.cwd()).resolve()
    sources: dict[str, str] = {}
    options: dict[str, Any] = {
        "database": db,
        "model": model,
        "max_file_bytes": max_file_bytes,
        "watch": watch,
        "threads": threads,
    }
    root_values = _given_roots(roots, env, cwd, sources)
    # With roots given, the project (and its database) is found from the first root, so that
    # `specmem scan ~/code/app/specs` run from anywhere uses that project's database.
    start = root_values[0].resolve() if root_values else cwd
    project_file = find_project_file(start)
    file_settings = read_project_file(project_file) if project_file else {}
    project = project_file.parent if project_file else find_project(start)
    if not root_values and "roots" in file_settings:
        assert project_file is not None
        root_values = _file_roots(project_file, file_settings["roots"])
        sources["roots"] = str(project_file)
    remembered = None
    if not root_values and project_file is None:
        from specmem.indexer.remembered import remembered_for  # (it imports this module)

        remembered = remembered_for(cwd)
        if remembered is not None:
            root_values = list(remembered.roots)
            sources["roots"] = f"remembered from `specmem scan` in {remembered.folder}"
            project = find_project(root_values[0])
    if not root_values:
        root_values = [(project or cwd) / "specs"]
    resolved_roots = tuple(dict.fromkeys(p.resolve() for p in root_values))
    for root in resolved_roots:
        _utf8_path(root, "root folder")
    values = _settings(options, env, file_settings, project_file, sources)
    db_path = _db_path(values, sources, project_file, project, remembered, resolved_roots, cwd)
    _utf8_path(db_path, "index path")
    # The adopted conventions' places become roots of their own, unless roots were chosen for this run (an option
    # or SPECMEM_ROOTS: exactly those folders) or a root already holds them: those at the project top, and those
    # below it that the last full scan found (indexer/places.py: finding them takes a walk of the project).
    config = Config(
        project=project or cwd,
        db_path=db_path,
        roots=resolved_roots,
        searches_project=project is not None
        and not sources.get("roots", "").startswith(("option", "env", "remembered")),
        project_file=project_file,
        sources=sources,
        **values,
    )
    return with_remembered_places(config) if config.searches_project else config


def with_remembered_places(config: Config) -> Config:
    """`config` with the conventions' places as roots: at the project top, and below it as the last full scan
    found them."""
    adopted = conventions_mod.named(config.conventions)
    return with_places(config, remembered_places(config.db_path, config.project, adopted))


def with_places(config: Config, below: Sequence[tuple[conventions_mod.Convention, Path]]) -> Config:
    """`config` with the adopted conventions' places as roots of their own: those at the project top and `below`
    (places found below it), except where a root of the settings already holds one."""
    own = tuple(r for r in config.roots if r not in config.convention_roots)
    adopted = conventions_mod.named(config.conventions)
    extra: dict[Path, conventions_mod.Convention] = {}
    for convention, place in [*conventions_mod.found_at(config.project, adopted), *below]:
        if place not in extra and not any(place == r or r in place.parents for r in own):
            extra[place] = convention
    return dataclasses.replace(
        config,
        roots=own + tuple(extra),
        convention_roots=tuple(extra),
        file_roots=tuple(place for place, c in extra.items() if not c.folder),
    )


def places_file(db_path: Path) -> Path:
    """Where a full scan remembers the conventions' places it found below the project top."""
    return side_file(db_path, "places.json")


def remembered_places(
    db_path: Path, project: Path, adopted: Sequence[conventions_mod.Convention]
) -> list[tuple[conventions_mod.Convention, Path]]:
    """The places the last full scan found below the project top that still exist and whose convention is
    adopted; nothing when none were remembered or the file is unreadable (the next scan writes it again)."""
    try:
        data = json.loads(places_file(db_path).read_text(encoding="utf-8"))
        listed = [(str(p["convention"]), str(p["path"])) for p in data["places"]]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    out = []
    for name, rel in listed:
        place = project / rel
        if ".." in Path(rel).parts or Path(rel).is_absolute() or place.is_symlink():
            continue
        folder = place.is_dir()
        if not folder and not place.is_file():
            continue  # gone since: the next scan forgets it
        kind = next((c for c in adopted if c.name == name and c.folder == folder), None)
        if kind is not None:
            out.append((kind, place))
    return out
