#!/usr/bin/env python3
"""Chooses the committed corpus: from each minimized corpus
(corpus-work/<target>.min, made by `-merge=1`), up to 120 inputs and 24 KB,
spread evenly over the inputs sorted by size, into corpus/<target>/. The
full corpora stay in the git-ignored corpus-work/.

Targets in WHOLE commit their whole minimized corpus (up to 3 MB): their
coverage is still growing from run to run, and a run can only continue where
the last one stopped if its corpus survives a change of machine."""
import os
import shutil

ROOT = os.path.dirname(os.path.abspath(__file__))
MAX_FILES, MAX_BYTES = 120, 24 * 1024
WHOLE, WHOLE_MAX_BYTES = {"chat_template"}, 3 * 1024 * 1024
work = os.path.join(ROOT, "corpus-work")
for name in sorted(os.listdir(work)):
    if not name.endswith(".min"):
        continue
    target = name[: -len(".min")]
    src = os.path.join(work, name)
    # a merge still running (another run.sh): its .min is not complete yet
    log = os.path.join(work, f"{target}.merge.log")
    if os.path.exists(log) and "new files with" not in open(log, errors="replace").read():
        print(f"{target}: merge in progress, left as it is")
        continue
    files = sorted((os.path.getsize(os.path.join(src, f)), f) for f in os.listdir(src))
    max_files, max_bytes = (len(files), WHOLE_MAX_BYTES) if target in WHOLE else (MAX_FILES, MAX_BYTES)
    step = max(1, len(files) / max_files) if files else 1
    picked = [files[int(i * step)] for i in range(min(max_files, len(files)))]
    while sum(s for s, _ in picked) > max_bytes:
        picked.pop()  # the largest
    dst = os.path.join(ROOT, "corpus", target)
    if os.path.isdir(dst) and sorted(os.listdir(dst)) == sorted(f for _, f in picked):
        continue  # unchanged: leave it, another run may be reading it
    shutil.rmtree(dst, ignore_errors=True)
    os.makedirs(dst)
    for _, f in picked:
        shutil.copy(os.path.join(src, f), dst)
    print(f"{target}: {len(picked)} of {len(files)} inputs, {sum(s for s, _ in picked)} bytes")
