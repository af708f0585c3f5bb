"""The IPython face of a3s_nb: ``%a3s_save``, ``%a3s_resume``, ``%a3s_sessions``, ...

``%load_ext a3s_nb`` registers them. Each is a thin face over a public function
(:func:`a3s_nb.save`, :func:`a3s_nb.resume`, :func:`a3s_nb.list_sessions`); misuse raises a
plain ``UsageError`` that says what to do, never a traceback.

Settings are traitlets on the ``A3sNb`` class::

    %config A3sNb.store = "/data/a3s_sessions"   # where the magics save and look
    %config A3sNb.show_transcript = False        # %a3s_resume without the transcript

The store is, in order: ``--store``, then ``%config A3sNb.store``, then ``$A3S_NB_STORE``,
then ``./a3s_sessions``.

IPython is imported only here and in :mod:`a3s_nb.widgets` (which the magics use); the core
(models, store, capture, frames) never imports it.
"""

from __future__ import annotations

import functools
import keyword
import os
import shlex
from collections.abc import Callable
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.display import display
from traitlets import Bool, Unicode

from .. import api
from ..errors import A3sNbError
from ..lab.lineage import diff, fork, fork_summary, lineage_of, parse_edits, replay
from ..saved import SavedSession, transcript_html, transcript_text
from ..sdk.capture import is_session_like
from ..store.models import SessionBundle
from .autosave import autosave

__all__ = ["A3sNb", "load_ipython_extension", "show_transcript", "unload_ipython_extension"]

# IPython's own names, which hold history and helpers, not the user's sessions
_SKIP_NAMES = {"In", "Out", "exit", "quit", "get_ipython"}


# --------------------------------------------------------------------------- transcript


class _Transcript:
    """Displays as the transcript: plain text in a terminal, HTML in a notebook."""

    def __init__(self, obj: Any):
        self.obj = obj

    def __repr__(self) -> str:
        return transcript_text(self.obj)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(transcript_text(self.obj))

    def _repr_html_(self) -> str:
        return transcript_html(self.obj)


def show_transcript(obj: Any) -> None:
    """Show the conversation so far of a saved or live session inline.

    ``obj`` is a :class:`~a3s_nb.SavedSession`, a :class:`~a3s_nb.SessionBundle` or a live
    session. In a kernel (JupyterLab, Notebook, VS Code) this is the
    :class:`~a3s_nb.widgets.Transcript` widget; in a terminal, or without ipywidgets, the
    plain transcript.
    """
    from IPython import get_ipython

    if getattr(get_ipython(), "kernel", None) is not None:
        try:
            from ..widgets import Transcript

            display(Transcript(obj))
            return
        except (ImportError, A3sNbError):  # no ipywidgets, or a session it cannot read
            pass
    display(_Transcript(obj))


# --------------------------------------------------------------------------- helpers


def _usage_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn domain errors into the plain UsageError IPython shows without a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UsageError:
            raise
        except A3sNbError as e:
            raise UsageError(str(e)) from e
        except ImportError as e:  # a3s-code missing: the message is the pip line
            raise UsageError(f"a3s-code is not installed: {e}") from e

    return wrapper


def _split(line: str) -> list[str]:
    """The words of a magic's argument line, quotes and escapes undone as a shell would.

    ``--id 'fix-1'`` is ``fix-1`` and ``--store "my store"`` one word. A word that starts
    with an unquoted ``#`` begins a comment, as in a shell (``%a3s_save s  # note``); a
    ``#`` inside a word or quotes is kept. On Windows a backslash is a path separator, not
    an escape.
    """

    def lexer(text: str, posix: bool) -> shlex.shlex:
        lex = shlex.shlex(text, posix=posix)
        lex.whitespace_split = True
        lex.commenters = ""
        if os.name == "nt" or not posix:
            lex.escape = ""
        return lex

    try:
        raw = list(lexer(line, posix=False))  # words as written, quotes kept
        comment = next((i for i, word in enumerate(raw) if word.startswith("#")), None)
        if comment is not None:
            line = " ".join(raw[:comment])
        return list(lexer(line, posix=True))
    except ValueError as e:  # "No closing quotation", "No escaped character"
        raise UsageError(f"cannot read the arguments {line.strip()!r}: {e}") from None


def _list_filter_arguments(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The ``@argument`` of each listing filter (``api.LIST_FILTERS``, which ``a3s-nb
    list`` takes too), in their order."""
    for flag, options in reversed(api.LIST_FILTERS):
        fn = argument(flag, **options)(fn)
    return fn


def _parse(magic: Callable[..., Any], line: str) -> Any:
    """Parse a magic's line with its ``@argument`` parser; an empty value is refused."""
    args = magic.parser.parse_args(_split(line))
    for action in magic.parser._actions:
        value = getattr(args, action.dest, None)
        if isinstance(value, str) and not value.strip():
            name = action.option_strings[-1] if action.option_strings else action.dest.upper()
            raise UsageError(f"{name} {value!r} is empty: give a value")
    return args


@magics_class
class A3sNb(Magics):
    """Save, resume and list a3s-code sessions from a notebook."""

    store = Unicode(
        None,
        allow_none=True,
        help="Store directory of the magics, when --store is not given "
        "(else $A3S_NB_STORE, else ./a3s_sessions).",
    ).tag(config=True)

    show_transcript = Bool(True, help="Show the transcript so far after %a3s_resume.").tag(
        config=True
    )

    # ---- namespace -----------------------------------------------------------------------

    def _store(self, given: str | None) -> str | None:
        return given or self.store or None  # None: the API applies env, then the default

    def _lookup(self, expr: str, what: str) -> Any:
        """The value of a variable (or ``var.attr``) in the user's namespace."""
        names = expr.split(".")
        if not all(n.isidentifier() and not keyword.iskeyword(n) for n in names):
            raise UsageError(f"{expr!r} is not a variable name")
        ns = self.shell.user_ns
        if names[0] not in ns:
            raise UsageError(f"no variable {names[0]!r} in the namespace; {what}")
        value = ns[names[0]]
        for i, name in enumerate(names[1:], 1):
            try:
                value = getattr(value, name)
            except AttributeError:
                raise UsageError(
                    f"{'.'.join(names[:i])} has no attribute {name!r}; {what}"
                ) from None
        return value

    def _user_variables(self) -> dict[str, Any]:
        hidden = getattr(self.shell, "user_ns_hidden", {})
        return {
            name: value
            for name, value in self.shell.user_ns.items()
            if not name.startswith("_") and name not in _SKIP_NAMES and name not in hidden
        }

    def _find_session(self, var: str | None) -> tuple[str, Any]:
        if var:
            obj = self._lookup(var, "pass the variable that holds the session")
            if isinstance(obj, SavedSession):
                return var, obj  # api.save explains how to continue it
            if not is_session_like(obj):
                raise UsageError(
                    f"{var} is a {type(obj).__name__}, not a live a3s-code session; "
                    "pass a Session (from agent.session(...) or %a3s_resume ID --agent AGENT)"
                )
            return var, obj
        variables = self._user_variables()
        found: dict[int, tuple[Any, list[str]]] = {}
        for name, value in variables.items():
            if is_session_like(value):
                found.setdefault(id(value), (value, []))[1].append(name)
        if len(found) == 1:
            obj, names = next(iter(found.values()))
            return names[0], obj
        if not found:
            seen = sorted(variables)
            listing = ", ".join(seen[:15]) + (" ..." if len(seen) > 15 else "")
            raise UsageError(
                "no live a3s-code session in the namespace (variables seen: "
                f"{listing or 'none'}); create one, e.g. session = agent.session('.'), "
                "or name it: %a3s_save VAR"
            )
        groups = sorted(" = ".join(sorted(names)) for _, names in found.values())
        first = sorted(groups)[0].split(" = ")[0]
        raise UsageError(
            f"{len(found)} live a3s-code sessions in the namespace: {', '.join(groups)}; "
            f"say which one to save, e.g. %a3s_save {first}"
        )

    # ---- %a3s_save -------------------------------------------------------------------------

    @magic_arguments()
    @argument(
        "var",
        nargs="?",
        help="The variable holding the live session (default: the one live session in "
        "the namespace).",
    )
    @argument(
        "--id",
        dest="session_id",
        help="Save under this id instead of the session's; later saves follow it.",
    )
    @argument("--store", help="The store directory (default: see %%config A3sNb.store).")
    @argument(
        "--model",
        help="The session's model as provider/model, for when the session cannot tell.",
    )
    @argument(
        "--redact",
        action="store_true",
        help="Replace secrets found in what is written with [REDACTED:kind].",
    )
    @argument(
        "--allow-secrets",
        action="store_true",
        help="Write secrets found as they are (by default the save is refused).",
    )
    @argument(
        "--force",
        action="store_true",
        help="Overwrite what is stored under the id even when it holds messages or runs "
        "this session lacks (saved since by another handle, kernel or the SDK).",
    )
    @line_magic
    @_usage_errors
    def a3s_save(self, line: str) -> None:
        """Save a live a3s-code session: history, runs, traces, verification, artifacts.

        Saving again updates the same saved session: after --id NAME, later saves (and
        autosave) update NAME until another --id is given. Prints the id, the store and
        the counts. Refuses to write secrets (API keys, tokens, private keys, secret
        environment values) unless --redact or --allow-secrets is given. Refuses to
        overwrite work saved under the id since this session was resumed or last saved
        (another handle, another kernel, the SDK) unless --force is given.

        Examples::

            %a3s_save
            %a3s_save session --id fix-parse-date
            %a3s_save session --redact

        Function twin: ``a3s_nb.save(session, id=None, store=None, redact=False,
        force=False, ...)``.
        """
        args = _parse(self.a3s_save, line)
        _, session = self._find_session(args.var)
        result = api.save(
            session,
            args.session_id,
            store=self._store(args.store),
            model=args.model,
            redact=args.redact,
            allow_secrets=args.allow_secrets,
            force=args.force,
        )
        print(result)

    # ---- %a3s_autosave ---------------------------------------------------------------------

    @magic_arguments()
    @argument("state", nargs="?", help="on or off (default: show whether it is on).")
    @argument("--store", help="The store directory (default: see %%config A3sNb.store).")
    @argument(
        "--redact",
        action="store_true",
        help="Replace secrets found in what is written with [REDACTED:kind].",
    )
    @argument(
        "--allow-secrets",
        action="store_true",
        help="Write secrets found as they are (by default such a save is refused).",
    )
    @line_magic
    @_usage_errors
    def a3s_autosave(self, line: str) -> None:
        """Save every live session that changed, after each cell: %a3s_autosave on|off.

        After each cell, every live a3s-code session in the namespace that gained or
        changed a run is saved as %a3s_save would (same secret scan, same refusal to
        overwrite another handle's work); a refused save is said once on stderr and never
        fails the cell. Without an argument, says whether autosave is on, what it saved,
        and which sessions' saves keep being refused and why, one line each.

        Examples::

            %a3s_autosave on
            %a3s_autosave on --store sessions --redact
            %a3s_autosave
            %a3s_autosave off

        Function twin: ``a3s_nb.autosave(True, store=None, redact=False, ...)``.
        """
        args = _parse(self.a3s_autosave, line)
        state = (args.state or "").lower()
        if state not in ("", "on", "off"):
            raise UsageError(f"%a3s_autosave takes on or off, not {args.state!r}")
        given = args.store is not None or args.redact or args.allow_secrets
        if state != "on" and given:
            raise UsageError("--store, --redact and --allow-secrets go with %a3s_autosave on")
        if state == "":
            saver = autosave(None, shell=self.shell)
            print(
                saver or "autosave is off; %a3s_autosave on saves changed sessions after each cell"
            )
            return
        saver = autosave(
            state == "on",
            store=self._store(args.store),
            redact=args.redact,
            allow_secrets=args.allow_secrets,
            shell=self.shell,
        )
        print(saver or "autosave is off")

    # ---- %a3s_resume -----------------------------------------------------------------------

    @magic_arguments()
    @argument("id", help="The saved session's id, or a unique prefix of it.")
    @argument(
        "--agent",
        help="The variable holding an a3s_code.Agent: NAME becomes a live session that "
        "continues. Without it, NAME is a read-only view of the saved session.",
    )
    @argument(
        "--as",
        dest="name",
        default="session",
        help="The variable to bind (default: session).",
    )
    @argument("--store", help="The store directory (default: see %%config A3sNb.store).")
    @argument(
        "--model",
        help="Resume on this provider/model instead of the saved one (needs --agent).",
    )
    @argument(
        "--confirm-tools",
        action="store_true",
        help="Do not let the live session run tools without confirmation (a3s-code's "
        "default; a notebook has no confirmation prompt, so its tools then fail). a3s-code "
        "does not save permissions, so by default the resumed session may run its tools.",
    )
    @line_magic
    @_usage_errors
    def a3s_resume(self, line: str) -> None:
        """Bring back a saved session, by id or unique id prefix, and show its transcript.

        With --agent AGENT, NAME is bound to a live SDK session with the saved history,
        which continues where it left off (NAME.send(...)). Without it, NAME is bound to a
        read-only SavedSession (.transcript, .messages, .runs, .traces).

        A NAME that holds a live session with unsaved work (never saved, or changed since
        it was last saved or resumed) is not rebound: resume under another name (--as
        NAME), or save it first (%a3s_save NAME).

        Examples::

            %a3s_resume 4f1c --agent agent
            %a3s_resume 4f1c --as old

        Function twin: ``a3s_nb.resume(id, agent=None, store=None)``.
        """
        args = _parse(self.a3s_resume, line)
        name = args.name
        if not name.isidentifier() or keyword.iskeyword(name):
            raise UsageError(f"--as {name!r} is not a variable name")
        agent = None
        if args.agent:
            agent = self._lookup(args.agent, "pass the variable that holds the a3s_code.Agent")
        elif args.model or args.confirm_tools:
            flag = "--model" if args.model else "--confirm-tools"
            raise UsageError(f"{flag} needs --agent: only a live session runs a model and tools")
        options: dict[str, Any] = {"model": args.model} if args.model else {}
        if args.confirm_tools:
            options["allow_tools"] = False
        self._refuse_to_drop(name)
        obj = api.resume(args.id, agent, store=self._store(args.store), **options)
        self.shell.push({name: obj})
        if isinstance(obj, SavedSession):
            b = obj.bundle
            print(
                f"{name}: read-only saved session {obj.id} "
                f"({api._plural(len(b.session.messages), 'message')}, {api._plural(len(b.runs), 'run')}). "
                f"To continue it: %a3s_resume {obj.id} --agent AGENT"
            )
        else:
            print(
                f"{name}: live session {obj.session_id} resumed "
                f"({api._plural(len(obj.history()), 'message')}, {api._plural(len(obj.runs()), 'run')}); "
                f"{name}.send(...) continues it, %a3s_save {name} saves it."
            )
        if self.show_transcript:
            show_transcript(obj)

    def _refuse_to_drop(self, name: str) -> None:
        """Refuse to rebind ``name`` when it holds a live session with unsaved work."""
        current = self.shell.user_ns.get(name)
        if not is_session_like(current):
            return
        why = api.unsaved_work(current)
        if why is None:
            return
        raise UsageError(
            f"{name} holds live session {current.session_id} with unsaved work ({why}); "
            f"resuming into {name} would drop it. Resume under another name (--as NAME), "
            f"or save it first (%a3s_save {name}) and resume again."
        )

    # ---- %a3s_sessions ---------------------------------------------------------------------

    @magic_arguments()
    @argument("--store", help="The store directory (default: see %%config A3sNb.store).")
    @_list_filter_arguments
    @argument(
        "--all",
        action="store_true",
        help="Show every column of the sessions frame (default: "
        f"{', '.join(api.SESSION_LIST_COLUMNS)}).",
    )
    @argument(
        "--columns",
        help="Show these columns, separated by commas (see docs/frames.md#sessions).",
    )
    @argument(
        "--browse",
        action="store_true",
        help="Open the session browser widget (filter, sort, read, resume, delete) "
        "instead of listing.",
    )
    @argument(
        "--agent",
        help="With --browse: the variable holding an a3s_code.Agent, so that Resume "
        "brings sessions back live (else read-only).",
    )
    @line_magic
    @_usage_errors
    def a3s_sessions(self, line: str) -> Any:
        """List the saved sessions, newest first: id, time of the last save, model,
        counts and cost (``--all`` for every column, ``--columns`` for others).
        ``--contains TEXT`` matches the session id, or (ignoring case) the session's
        content: prompts, answers, tool calls and their outputs, artifacts (the index of
        ``%a3s_search``).

        Examples::

            %a3s_sessions
            %a3s_sessions --limit 5 --model gpt-4o --since 2025-11-01
            %a3s_sessions --contains fix- --columns session_id,n_runs_failed,cost_usd
            %a3s_sessions --browse --agent agent

        Function twin: ``a3s_nb.list_sessions(store=None, limit=None, ...)``; the browser is
        ``a3s_nb.widgets.SessionBrowser(store=None, agent=None)``.
        """
        args = _parse(self.a3s_sessions, line)
        store = self._store(args.store)
        if args.browse:
            return self._browse(args, store)
        if args.agent:
            raise UsageError("--agent goes with --browse (Resume in the browser uses it)")
        if args.all and args.columns is not None:
            raise UsageError("choose one of --all and --columns")
        if args.all:
            columns = None
        elif args.columns is not None:
            columns = args.columns
        else:
            columns = api.SESSION_LIST_COLUMNS
        df = api.list_sessions(store, **api.list_filters(args), columns=columns)
        if df.empty:
            print(f"no saved sessions match in {api._open(store)}")
            return None
        return df

    # ---- %a3s_search ----------------------------------------------------------------------

    @magic_arguments()
    @argument("query", nargs="+", help="The text to find (words are joined by one space).")
    @argument("--store", help="The store directory (default: see %%config A3sNb.store).")
    @argument(
        "--in",
        dest="where",
        action="append",
        metavar="KIND",
        help="Only matches in this kind of text: prompt, assistant, tool_args, "
        "tool_output, artifact (repeatable).",
    )
    @argument("--regex", action="store_true", help="The query is a Python regular expression.")
    @argument("--limit", type=int, help="At most N hits.")
    @line_magic
    @_usage_errors
    def a3s_search(self, line: str) -> Any:
        """Find text in every saved session; click a hit to read that prompt.

        A plain query matches any text that contains it, ignoring case; ``--regex`` makes
        it a Python regular expression. Examples::

            %a3s_search rm -rf --in tool_args
            %a3s_search "Traceback.*KeyError" --regex --limit 20

        Function twin: ``a3s_nb.search(query, store=None, regex=False, where=None,
        limit=None)`` (a DataFrame); the widget is ``a3s_nb.notebook.searchview.SearchResults``.
        """
        args = _parse(self.a3s_search, line)
        try:
            from .searchview import SearchResults  # ipywidgets: imported on first use
        except ImportError as e:
            raise UsageError(
                f"%a3s_search shows a widget and needs ipywidgets ({e}): pip install "
                "'a3s-nb[all]', or call a3s_nb.search(...) for a DataFrame"
            ) from e
        return SearchResults(
            " ".join(args.query),
            store=self._store(args.store),
            regex=args.regex,
            where=args.where,
            limit=args.limit,
        )

    def _browse(self, args: Any, store: str | None) -> Any:
        given = [f"--{name}" for name, value in api.list_filters(args).items() if value is not None]
        given += ["--all"] if args.all else []
        given += ["--columns"] if args.columns is not None else []
        if given:
            raise UsageError(
                f"{' '.join(given)} cannot go with --browse: the browser has its own filter "
                "box, model and status menus"
            )
        agent = None
        if args.agent:
            agent = self._lookup(args.agent, "pass the variable that holds the a3s_code.Agent")
        try:
            from ..widgets import SessionBrowser
        except ImportError as e:
            raise UsageError(
                f"the session browser needs ipywidgets ({e}): pip install 'a3s-nb[all]'"
            ) from e
        return SessionBrowser(store, agent=agent)

    # ---- lineage: %a3s_fork, %a3s_diff, %a3s_replay -------------------------------------

    def _session_source(self, name: str) -> Any:
        """A variable holding a session (live, saved or a bundle), else ``name`` as an id."""
        ns = self.shell.user_ns
        if name.isidentifier() and name in ns:
            value = ns[name]
            if isinstance(value, SavedSession | SessionBundle) or is_session_like(value):
                return value
        return name

    def _variable_name(self, name: str, flag: str = "--as") -> str:
        if not name.isidentifier() or keyword.iskeyword(name):
            raise UsageError(f"{flag} {name!r} is not a variable name")
        return name

    @magic_arguments()
    @argument("id", help="The session to fork: a saved id (or unique prefix), or a variable.")
    @argument(
        "--at",
        type=int,
        help="Keep the first N prompts (a prompt is one user prompt and its run); "
        "default: all of them.",
    )
    @argument("--as", dest="name", default="fork", help="The variable to bind (default: fork).")
    @argument(
        "--agent",
        help="The variable holding an a3s_code.Agent: the fork is live and continues "
        "with NAME.send(...). Without it, NAME is read-only.",
    )
    @argument("--id", dest="new_id", help="The fork's id (default: ID-fork-K).")
    @argument(
        "--workspace",
        help="Copy the source's workspace to this new directory and work there "
        "(a3s-code keeps no snapshots of files: without it, the fork shares the folder).",
    )
    @argument(
        "--edit",
        action="append",
        default=[],
        metavar="CALL_ID=TEXT",
        help="What if tool call CALL_ID had returned TEXT: the fork's history holds TEXT as "
        "its output (a call of the kept prompts; quote TEXT with spaces). Repeatable.",
    )
    @argument("--store", help="The store directory (default: see %%config A3sNb.store).")
    @line_magic
    @_usage_errors
    def a3s_fork(self, line: str) -> None:
        """Fork a session after prompt N: a new saved session with the first N prompts.

        The runs, traces, verification reports and artifacts of the kept prompts come
        along; the source stays in the store untouched. The fork records its parent, the
        prompt it was cut after and when (see a3s_nb.lineage_of). To rewind a session,
        fork it under its own variable name and carry on:

            %a3s_fork 4f1c --at 2 --as session --agent agent
            session.send("Try it another way")

        What if a tool had returned something else? ``--edit CALL_ID=TEXT`` gives the fork
        that output for the call (the ids: a3s_nb.lab.prompts(ID), or the error message):

            %a3s_fork 4f1c --at 3 --edit call_807e="2 tests failed" --agent agent

        Function twin: ``a3s_nb.fork(source, at=None, new_id=None, store=None,
        agent=None, workspace=None, edits=None)``.
        """
        args = _parse(self.a3s_fork, line)
        name = self._variable_name(args.name)
        edits = parse_edits(args.edit)
        agent = None
        if args.agent:
            agent = self._lookup(args.agent, "pass the variable that holds the a3s_code.Agent")
        store = self._store(args.store)
        obj = fork(
            self._session_source(args.id),
            args.at,
            new_id=args.new_id,
            store=store,
            agent=agent,
            workspace=args.workspace,
            edits=edits,
        )
        self.shell.push({name: obj})
        sid = obj.id if isinstance(obj, SavedSession) else obj.session_id
        rec = lineage_of(sid, store=getattr(obj, "store", None) or store) or {}
        how = (
            f"read-only; to continue it: %a3s_resume {sid} --agent AGENT"
            if isinstance(obj, SavedSession)
            else f"live; {name}.send(...) continues it"
        )
        print(f"{name}: session {sid}, {fork_summary(rec)} ({how})")

    @magic_arguments()
    @argument("a", help="Session A: a saved id (or unique prefix), or a variable.")
    @argument("b", help="Session B: a saved id (or unique prefix), or a variable.")
    @argument("--store", help="The store of A (and of B; default: see %%config A3sNb.store).")
    @argument("--store-b", dest="store_b", help="The store of B, when it is another one.")
    @argument(
        "--frame",
        action="store_true",
        help="Return the diff DataFrame instead of the side-by-side widget.",
    )
    @line_magic
    @_usage_errors
    def a3s_diff(self, line: str) -> Any:
        """Compare two sessions prompt by prompt and tool call by tool call.

        Shows the two transcripts side by side: the prompts a fork shares with its parent
        collapsed, changed, added and removed prompts and tool calls marked, and a summary
        (prompts, runs, tool calls, tool errors, tokens, duration, final status,
        verification). Works on saved and live sessions, and across two stores.

            %a3s_diff 4f1c 4f1c-fork-1
            %a3s_diff session replay --frame

        Function twins: ``a3s_nb.diff(a, b, store=None, store_b=None)`` (the frame) and
        ``a3s_nb.widgets.DiffView(a, b, store=None, store_b=None)``.
        """
        args = _parse(self.a3s_diff, line)
        store = self._store(args.store)
        df = diff(
            self._session_source(args.a),
            self._session_source(args.b),
            store=store,
            store_b=args.store_b or store,
        )
        if args.frame:
            return df
        try:
            from ..widgets import DiffView
        except ImportError as e:
            raise UsageError(
                f"the diff widget needs ipywidgets ({e}): pip install 'a3s-nb[all]', or use --frame"
            ) from e
        return DiffView(df)

    @magic_arguments()
    @argument("id", help="The saved session's id, or a unique prefix of it.")
    @argument(
        "-o",
        "--output",
        help="The HTML file to write (default: <id>.html in the working directory).",
    )
    @argument("--store", help="The store directory (default: see %%config A3sNb.store).")
    @argument(
        "--allow-secrets",
        action="store_true",
        help="Show the secrets the saved session holds as they are (default: redacted).",
    )
    @line_magic
    @_usage_errors
    def a3s_report(self, line: str) -> None:
        """Write a saved session as one self-contained HTML file to share.

        The page needs nothing but a browser (no kernel, no network): the transcript by
        prompt with tool calls folded, the runs and their timeline, every tool call with
        its duration and failures, tokens and cost per model, the lineage and the
        verification checks. Secrets in the session are redacted unless --allow-secrets.
        Prints where it wrote; the file is replaced atomically if it exists.

            %a3s_report fix-1                   # ./fix-1.html
            %a3s_report fix-1 -o share/fix-1.html

        Function twin: ``a3s_nb.report(id, path=None, store=None, allow_secrets=False)``
        (returns the HTML when no path is given); from a terminal: ``a3s-nb report``.
        """
        args = _parse(self.a3s_report, line)
        from ..exports.report import report_file  # pandas: imported on first use

        result = report_file(
            args.id,
            args.output,
            store=self._store(args.store),
            allow_secrets=args.allow_secrets,
        )
        print(result)

    @magic_arguments()
    @argument("id", help="The session to replay: a saved id (or unique prefix), or a variable.")
    @argument(
        "--agent", required=True, help="The variable holding the a3s_code.Agent that replays it."
    )
    @argument(
        "--model",
        help="provider/model to replay on (one the agent's config has); default: the "
        "agent's default model.",
    )
    @argument("--id", dest="new_id", help="The replay's id (default: ID-replay-K).")
    @argument(
        "--workspace",
        help="Where to put the copy of the source's workspace the replay works in "
        "(default: STORE/.a3s_nb/workspaces/<new id>, kept so the replay can be resumed).",
    )
    @argument("--as", dest="name", default="replay", help="The variable to bind (default: replay).")
    @argument(
        "--check",
        action="append",
        default=[],
        metavar="ID=COMMAND",
        help="A required check to run after the prompts (repeatable); its result is "
        "shown, and a failing one is a regression (see a3s_nb.lab.record_checks).",
    )
    @argument("--store", help="The store directory (default: see %%config A3sNb.store).")
    @line_magic
    @_usage_errors
    def a3s_replay(self, line: str) -> Any:
        """Replay a session's user prompts, in order, on another model, and compare.

        A fresh session (in a copy of the workspace) is sent the source's prompts; tools
        run again (a3s-code cannot serve them from the recording). It is saved with the
        lineage "replay of ID on MODEL", NAME is bound to the ReplayResult (.session is
        the live replay, .diff the comparison, .regressions what got worse), and the
        diff widget is shown.

            %a3s_replay 4f1c --agent agent --model openai/gpt-4o

        Function twin: ``a3s_nb.replay(source, agent, model=None, new_id=None,
        workspace=None, store=None)``; from a terminal or CI: ``a3s-nb replay``.
        """
        args = _parse(self.a3s_replay, line)
        name = self._variable_name(args.name)
        agent = self._lookup(args.agent, "pass the variable that holds the a3s_code.Agent")
        result = replay(
            self._session_source(args.id),
            agent,
            model=args.model,
            new_id=args.new_id,
            workspace=args.workspace,
            store=self._store(args.store),
            verify=_checks(args.check) or None,
        )
        self.shell.push({name: result})
        print(f"{name}: {result}")
        try:
            from ..widgets import DiffView
        except ImportError:
            return result.diff
        return DiffView(result.diff)


def _checks(items: list[str]) -> list[dict[str, Any]]:
    """``--check ID=COMMAND`` values as required checks."""
    out = []
    for item in items:
        cid, sep, command = item.partition("=")
        if not sep or not cid.strip() or not command.strip():
            raise UsageError(f"--check {item!r} is not ID=COMMAND")
        out.append({"id": cid.strip(), "command": command.strip(), "required": True})
    return out


# --------------------------------------------------------------------------- extension

_LOADED: dict[int, A3sNb] = {}


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext a3s_nb``: register the magics and the ``A3sNb`` configurable."""
    if id(ipython) in _LOADED:
        return
    magics = A3sNb(shell=ipython)  # also joins ipython.configurables, for %config
    ipython.register_magics(magics)
    _LOADED[id(ipython)] = magics


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext a3s_nb``: remove the magics and the configurable again."""
    magics = _LOADED.pop(id(ipython), None)
    if magics is None:
        return
    autosave(False, shell=ipython)
    for kind, table in magics.magics.items():
        registered = ipython.magics_manager.magics.get(kind, {})
        for name in table:
            registered.pop(name, None)
    if magics in ipython.configurables:
        ipython.configurables.remove(magics)
