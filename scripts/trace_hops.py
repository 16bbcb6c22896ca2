#!/usr/bin/env python3
"""Follow one video from ``bodybatch run`` to its manifest row and count the module
hops: every distinct (caller module -> callee module) call edge inside the package,
in order of first use, and how many of them go back to a module entered earlier
(a call "back up" the data flow), and how many of those re-enter a stage through a
module-level function rather than a method of an object handed down. A package that is one concept (``codec``, a format
package) counts as one module; leaf helpers that call nothing else of the package
(errors, file, msgpack, grid, camera, lock and row-validation helpers) are not steps
of the data flow and are left out.

    python scripts/trace_hops.py [PREDICTION_FILE]   (default: the committed sample's clip_a.xz)

Runs in one process (``pool.n_jobs: 1``) in a temporary folder; prints the module
sequence, the edges and the counts. Used to compare the architecture before and
after a change (run it from each checkout).
"""

import inspect
import shutil
import sys
import tempfile
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
#: Packages counted as one module (the old layout's names too, for comparisons).
GROUPS = ("bodybatch.codec", "bodybatch.formats.bodycompress", "bodybatch.manifest")
#: Leaf helpers, old and new names.
HELPERS = {"bodybatch"} | {f"bodybatch.{m}" for m in ("errors", "_files", "_msgpack", "_grid", "cameras", "_assignment", "_lock",
                                      "_version", "_rows", "_json", "_trackdata", "codec.quantize")}  # fmt: skip


def main():
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parent / "sample" / "preds_np" / "clip_a.xz"
    import bodybatch
    from bodybatch.cli import main as cli

    package = Path(bodybatch.__file__).parent
    edges, order, function_edges = [], [], set()

    def module_of(frame):
        path = Path(frame.f_code.co_filename)
        try:
            rel = path.relative_to(package)
        except ValueError:
            return None
        name = ".".join(("bodybatch",) + rel.with_suffix("").parts)
        name = name[: -len(".__init__")] if name.endswith(".__init__") else name
        for group in GROUPS:
            if name.startswith(group + "."):
                return group
        return None if name in HELPERS else name

    def profile(frame, event, arg):
        if event != "call" or not frame.f_code.co_flags & inspect.CO_NEWLOCALS:  # module and class bodies
            return
        callee = module_of(frame)
        caller = module_of(frame.f_back) if frame.f_back is not None else None
        if callee is None:
            return
        if callee not in order:
            order.append(callee)
        if caller is not None and caller != callee:
            if (caller, callee) not in edges:
                edges.append((caller, callee))
            code = frame.f_code
            if not (code.co_argcount and code.co_varnames[0] in ("self", "cls")):  # a module-level function
                function_edges.add((caller, callee))

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        shutil.copy(source, data / source.name)
        config = Path(tmp) / "config.yaml"
        config.write_text(yaml.safe_dump({"input": {"root": str(data)}, "output": {"root": str(Path(tmp) / "out")},
                                          "tracks": {"min_length": 8}, "pool": {"n_jobs": 1, "progress": False}}))
        sys.setprofile(profile)
        try:
            code = cli(["run", str(config)])
        finally:
            sys.setprofile(None)
    rank = {m: i for i, m in enumerate(order)}
    back = [(a, b) for a, b in edges if rank[b] < rank[a]]
    back_functions = [e for e in back if e in function_edges]
    print("modules in order of first entry:")
    for m in order:
        print(f"  {m}")
    print("call edges between modules (first use order; * = back to a module entered earlier):")
    for a, b in edges:
        mark = "**" if (a, b) in back_functions else "* " if (a, b) in back else "  "
        print(f"  {mark} {a} -> {b}")
    print(f"run exit {code}: {len(order)} modules, {len(edges)} module hops, {len(back)} back to a module entered "
          f"earlier (**: {len(back_functions)} of them call a module function; the others call a method of an "
          f"object handed down, e.g. the Config or the Codec)")


if __name__ == "__main__":
    main()
