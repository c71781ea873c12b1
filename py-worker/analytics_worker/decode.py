"""A request frame -> the algorithm's arguments: validation, float64 decoding and data-file mappings."""

import mmap
import os
import re
import stat

import numpy as np

from .core import UNKNOWN_ALGORITHM, AlgorithmError, Input


class BadRequest(Exception):
    pass


def _decode_floats(raw, field):
    if not isinstance(raw, (bytes, bytearray)):
        raise BadRequest("field '%s' must be msgpack bin (little-endian float64), got %s" % (field, type(raw).__name__))
    if len(raw) % 8:
        raise BadRequest("field '%s' has %d bytes, not a multiple of 8" % (field, len(raw)))
    return np.frombuffer(raw, dtype="<f8")


# Shared-memory hand-off (PROTOCOL.md, "data_file"): the engine writes a large float64 array into a file of
# its private runtime directory and sends only the file's name. The name is checked before it is joined with
# the directory the worker already knows (the --socket directory); nothing else from a frame becomes a path.
_MAP_POPULATE = getattr(mmap, "MAP_POPULATE", 0)
_DATA_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}\Z")


def _map_floats(ref, field, data_dir, maps):
    """Maps the file named by a data_file/target_file map read-only; returns a read-only float64 view."""
    if data_dir is None:
        raise BadRequest("field '%s' is not supported by this worker (no runtime directory)" % field)
    if not isinstance(ref, dict) or set(ref) != {"name", "nbytes"}:
        raise BadRequest("field '%s' must be a map with exactly 'name' and 'nbytes'" % field)
    name, nbytes = ref["name"], ref["nbytes"]
    if not isinstance(name, str) or not _DATA_FILE_NAME.match(name) or ".." in name:
        raise BadRequest("field '%s' has an invalid file name (a plain name of [A-Za-z0-9_.-] is required)" % field)
    if type(nbytes) is not int or nbytes < 0 or nbytes % 8:
        raise BadRequest("field '%s': nbytes must be a non-negative multiple of 8" % field)
    try:
        fd = os.open(os.path.join(data_dir, name), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        raise BadRequest("field '%s': file %.80r not found in the runtime directory" % (field, name))
    except OSError as e:
        raise BadRequest("field '%s': cannot open %.80r (%s)" % (field, name, e.strerror or type(e).__name__))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise BadRequest("field '%s': %.80r is not a regular file" % (field, name))
        if st.st_size != nbytes:
            raise BadRequest("field '%s': file %.80r has %d bytes, nbytes says %d" % (field, name, st.st_size, nbytes))
        if nbytes == 0:
            return np.empty(0, dtype="<f8")
        # MAP_POPULATE (Linux, Python >= 3.10): map all pages at once instead of one fault per 4 KiB page
        mm = mmap.mmap(fd, nbytes, flags=mmap.MAP_SHARED | _MAP_POPULATE, prot=mmap.PROT_READ)
    finally:
        os.close(fd)
    maps.append(mm)
    return np.frombuffer(mm, dtype="<f8")  # read-only, no copy


def _release_maps(maps):
    """Unmaps the request's files; a mapping still referenced (e.g. kept by a result) is left to the GC."""
    while maps:
        mm = maps.pop()
        try:
            mm.close()
        except BufferError:
            pass


def decode_request(msg, algorithms, data_dir=None, maps=None, progress=None):
    """Validate a request map; returns (Algorithm, Input). Raises BadRequest / AlgorithmError.

    ``data_dir`` is the runtime directory for ``data_file``/``target_file`` (None: not supported); the
    mappings made are appended to ``maps`` for the caller to release with _release_maps once done."""
    if maps is None:
        maps = []
    name = msg.get("algorithm")
    if not isinstance(name, str):
        raise BadRequest("field 'algorithm' must be a string")
    algo = algorithms.get(name)
    if algo is None:
        raise AlgorithmError(UNKNOWN_ALGORITHM, "unknown algorithm %.80r" % name)

    params = msg.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in params.items()):
        raise BadRequest("field 'params' must be a map of string to string")

    data_ref = msg.get("data_file")
    if data_ref is not None:
        if msg.get("data") is not None:
            raise BadRequest("fields 'data' and 'data_file' are mutually exclusive")
        data = _map_floats(data_ref, "data_file", data_dir, maps)
    else:
        raw = msg.get("data", b"")
        data = _decode_floats(b"" if raw is None else raw, "data")

    shape = msg.get("shape")
    if shape is None or shape == []:
        shape = [data.size]
    if (not isinstance(shape, list) or not 1 <= len(shape) <= 2
            or not all(type(s) is int and s >= 0 for s in shape)):
        raise BadRequest("field 'shape' must be [n] or [n, d] with non-negative integers")
    total = 1
    for s in shape:
        total *= s
    if total != data.size:
        raise BadRequest("shape %s needs %d values but data has %d" % (shape, total, data.size))

    target = msg.get("target")
    target_ref = msg.get("target_file")
    if target_ref is not None:
        if target is not None:
            raise BadRequest("fields 'target' and 'target_file' are mutually exclusive")
        target = _map_floats(target_ref, "target_file", data_dir, maps)
    elif target is not None:
        target = _decode_floats(target, "target")
    if target is not None:
        if target.size != shape[0]:
            raise BadRequest("target has %d values but data has %d rows" % (target.size, shape[0]))

    texts = msg.get("texts")
    if texts is not None:
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise BadRequest("field 'texts' must be a list of strings")

    timeout = msg.get("timeout_ms")
    if timeout is not None and type(timeout) is not int:
        raise BadRequest("field 'timeout_ms' must be an integer")

    wants = msg.get("progress", False)
    if type(wants) is not bool:
        raise BadRequest("field 'progress' must be a boolean")

    return algo, Input(name, data, shape, target, texts or [], params, algo.optional,
                       progress=progress if wants else None)
