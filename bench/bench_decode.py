"""Where a multi-stream agent's decode+preprocess time goes, and whether it can get cheaper (issue 16 §1, §3).

One 640x480 MJPG file (the synthetic digits camera of bench-edge), the reference model's recipe (3x224x224 rgb,
INTER_AREA), measured on the cores this process may use:
1. per-stage cost on one thread (VideoCapture.read, cv2.resize INTER_AREA / INTER_LINEAR, the whole
   FramePreprocessor) under cv2.setNumThreads default / 0 / 1;
2. decode+preprocess frames/s with 1, 2, 4 threads against 2 and 4 processes, under each cv2 thread setting, in
   interleaved rounds; and a GIL probe: a pure-Python counter's rate alone and beside one decode+preprocess thread;
3. a NumPy/cv2-primitive replica of OpenCV's general INTER_AREA (same table, same float32 order): its bits against
   cv2.resize on random frames, and its cost;
4. the resize moved into a graph: an ONNX Resize (opset 18, linear, antialias) ahead of the normalisation on ONNX
   Runtime and OpenVINO, and OpenVINO's PrePostProcessor resize, against the cv2 path on the same decoded frame,
   with how far their pixels land from the trainer's.
Every figure carries the 1-minute load average when it was taken. Writes bench/results/decode.md and .json.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bench.bench_edge import FRAME_HW, make_video
from bench.machine import RESULTS, load1, machine, machine_line, uptime, write_results
from shared.manifest import Preprocess
from shared.preprocessing import FramePreprocessor

# The reference package's recipe (.store/models/reference/*/manifest.json), stated here so no store is needed.
REFERENCE = Preprocess(resize=(224, 224), channel_order="rgb", scale=1 / 255, mean=[0.1301] * 3, std=[0.2879] * 3)
CV_THREADS = ("default", "0", "1")


def set_cv_threads(setting: str, default: int) -> None:
    """Apply one of CV_THREADS ('default' restores what cv2 chose at import)."""
    cv2.setNumThreads(default if setting == "default" else int(setting))


def median_ms(fn: Callable[[int], Any], n: int) -> float:
    """Median wall ms of fn(i) over n calls after a short warm-up."""
    for i in range(5):
        fn(i)
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def cpu_ms(fn: Callable[[int], Any], n: int) -> float:
    """Process CPU ms per fn(i) (every thread of the process, cv2's pool included) over n calls."""
    for i in range(5):
        fn(i)
    cpu0 = time.process_time()
    for i in range(n):
        fn(i)
    return (time.process_time() - cpu0) / n * 1e3


def decode_preprocess_loop(video: str, seconds: float, start: Callable[[], Any]) -> int:
    """Frames decoded and preprocessed (reference recipe) in `seconds` after start() returns; loops the file."""
    cap = cv2.VideoCapture(video)
    pre = FramePreprocessor(REFERENCE)
    out = np.empty(pre.output_shape, np.float32)
    start()
    end, n = time.perf_counter() + seconds, 0
    while time.perf_counter() < end:
        ok, img = cap.read()
        if not ok:
            cap.release()
            cap = cv2.VideoCapture(video)
            continue
        pre.preprocess_into(img, out)
        n += 1
    cap.release()
    return n


def _proc_worker(video: str, seconds: float, cv_threads: str, barrier: Any, results: Any) -> None:
    """One process of the multi-process run (spawned: its own interpreter, GIL and cv2 thread pool)."""
    set_cv_threads(cv_threads, cv2.getNumThreads())
    cpu0 = [0.0]

    def start() -> None:
        barrier.wait()
        cpu0[0] = time.process_time()

    n = decode_preprocess_loop(video, seconds, start)
    results.put((n, time.process_time() - cpu0[0]))


def run_threads(video: str, n: int, seconds: float) -> tuple[float, float]:
    """Aggregate frames/s of n threads in this process (each its own capture and preprocessor), and CPU/wall."""
    barrier = threading.Barrier(n)
    counts: list[int] = []
    threads = [threading.Thread(target=lambda: counts.append(decode_preprocess_loop(video, seconds, barrier.wait)))
               for _ in range(n)]
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / seconds, (time.process_time() - cpu0) / (time.perf_counter() - wall0)


def run_processes(video: str, n: int, seconds: float, cv_threads: str) -> tuple[float, float]:
    """Aggregate frames/s of n spawned processes (start-up excluded: all count together), and their CPU/wall."""
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_proc_worker, args=(video, seconds, cv_threads, barrier, results)) for _ in range(n)]
    for p in procs:
        p.start()
    got = [results.get(timeout=120 + seconds) for _ in procs]
    for p in procs:
        p.join()
    return sum(g[0] for g in got) / seconds, sum(g[1] for g in got) / seconds


def stages(video: str, frames: list[np.ndarray], default: int, n: int) -> list[dict[str, Any]]:
    """Per-stage median ms on one thread under each cv2 thread setting."""
    rows = []
    pre = FramePreprocessor(REFERENCE)
    out = np.empty(pre.output_shape, np.float32)
    dst = np.empty((224, 224, 3), np.uint8)
    for setting in CV_THREADS:
        set_cv_threads(setting, default)
        cap = cv2.VideoCapture(video)

        def read(_: int, cap: Any = cap) -> None:
            ok, _img = cap.read()
            if not ok:
                cap.set(cv2.CAP_PROP_POS_FRAMES, 0)

        row = {"cv_threads": setting, "getNumThreads": cv2.getNumThreads(), "load": load1(),
               "decode_ms": median_ms(read, n),
               "area_ms": median_ms(lambda i: cv2.resize(frames[i % len(frames)], (224, 224), dst=dst,
                                                         interpolation=cv2.INTER_AREA), n),
               "linear_ms": median_ms(lambda i: cv2.resize(frames[i % len(frames)], (224, 224),
                                                           interpolation=cv2.INTER_LINEAR), n),
               "preprocess_ms": median_ms(lambda i: pre.preprocess_into(frames[i % len(frames)], out), n),
               "preprocess_cpu_ms": cpu_ms(lambda i: pre.preprocess_into(frames[i % len(frames)], out), n)}
        cap.release()
        rows.append(row)
    set_cv_threads("default", default)
    return rows


def scaling(video: str, default: int, seconds: float, rounds: int) -> list[dict[str, Any]]:
    """Frames/s per (cv2 threads, mode), interleaved over rounds; each sample with its load."""
    rows: list[dict[str, Any]] = []
    for r in range(rounds):
        for setting in CV_THREADS:
            set_cv_threads(setting, default)
            for mode, n in (("threads", 1), ("threads", 2), ("threads", 4), ("processes", 2), ("processes", 4)):
                load = load1()
                if mode == "threads":
                    fps, cpu = run_threads(video, n, seconds)
                else:
                    fps, cpu = run_processes(video, n, seconds, setting)
                rows.append({"round": r, "cv_threads": setting, "mode": mode, "n": n, "fps": fps, "load": load,
                             "cpu_per_wall": cpu})
                print(f"round {r} cv2 threads {setting:>7} {n} {mode:<9} {fps:7.1f} fps cpu/wall {cpu:.2f} "
                      f"(load {load:.2f})")
    set_cv_threads("default", default)
    return rows


def paired(video: str, frames: list[np.ndarray], default: int, seconds: float, pairs: int) -> list[dict[str, Any]]:
    """cv2 threads 1 against default, back to back (order alternating) so slow load drift cancels in each pair.

    Per pair: 4 decode+preprocess threads' frames per CPU-second and fps, and one thread's preprocess median ms.
    """
    pre = FramePreprocessor(REFERENCE)
    out = np.empty(pre.output_shape, np.float32)
    rows = []
    for k in range(pairs):
        row: dict[str, Any] = {"pair": k, "load": load1()}
        for setting in ("1", "default") if k % 2 == 0 else ("default", "1"):
            set_cv_threads(setting, default)
            fps, cpu = run_threads(video, 4, seconds)
            row[setting] = {"fps": fps, "per_cpu_s": fps / cpu,
                            "preprocess_ms": median_ms(lambda i: pre.preprocess_into(frames[i % len(frames)], out),
                                                       100)}
        rows.append(row)
        print(f"pair {k}: {row}")
    set_cv_threads("default", default)
    return rows


def gil_probe(video: str, seconds: float) -> dict[str, Any]:
    """A pure-Python counter's rate alone and beside one decode+preprocess thread (a GIL holder would starve it)."""

    def count(stop: threading.Event) -> int:
        n = 0
        while not stop.is_set():
            n += 1
        return n

    def counter_rate(with_decoder: bool) -> tuple[float, float]:
        stop, got, frames = threading.Event(), [0], [0]
        t = threading.Thread(target=lambda: got.__setitem__(0, count(stop)))
        d = threading.Thread(target=lambda: frames.__setitem__(0, decode_preprocess_loop(video, seconds, lambda: 0)))
        if with_decoder:
            d.start()
        t.start()
        time.sleep(seconds)
        stop.set()
        t.join()
        if with_decoder:
            d.join()
        return got[0] / seconds, frames[0] / seconds

    load = load1()
    alone, _ = counter_rate(False)
    beside, dec_fps = counter_rate(True)
    alone2, _ = counter_rate(False)
    return {"load": load, "counter_alone_per_s": (alone + alone2) / 2, "counter_beside_per_s": beside,
            "decoder_fps_beside_counter": dec_fps}


def area_table(ssize: int, dsize: int) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV's computeResizeAreaTab as (dst, taps) source indices and float32 weights, zero-weight padded."""
    scale = ssize / dsize
    per: list[list[tuple[int, np.float32]]] = []
    for d in range(dsize):
        f1 = d * scale
        f2 = f1 + scale
        cell = min(scale, ssize - f1)
        s2 = min(math.floor(f2), ssize - 1)
        s1 = min(math.ceil(f1), s2)
        taps = [(s1 - 1, np.float32((s1 - f1) / cell))] if s1 - f1 > 1e-3 else []
        taps += [(s, np.float32(1.0 / cell)) for s in range(s1, s2)]
        if f2 - s2 > 1e-3:
            taps.append((s2, np.float32(min(min(f2 - s2, 1.0), cell) / cell)))
        per.append(taps)
    width = max(len(t) for t in per)
    idx, alpha = np.zeros((dsize, width), np.intp), np.zeros((dsize, width), np.float32)
    for d, taps in enumerate(per):
        for j, (s, a) in enumerate(taps):
            idx[d, j], alpha[d, j] = s, a
    return idx, alpha


class AreaReplica:
    """OpenCV's general INTER_AREA for HxWx3 uint8 rebuilt from primitives, same float32 order (a candidate)."""

    def __init__(self, src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> None:
        (h, w), (dh, dw) = src_hw, dst_hw
        xi, xa = area_table(w, dw)
        self.yi, self.ya = area_table(h, dh)
        self.taps = xi.shape[1]
        self.cols = xi.T.ravel()
        row = np.repeat(xa.T.reshape(-1, 1), 3, axis=1).reshape(1, -1)
        self.alpha = np.ascontiguousarray(np.broadcast_to(row, (h, row.shape[1])))
        self.dst_hw = dst_hw

    def __call__(self, src: np.ndarray) -> np.ndarray:
        """The resized frame (horizontal pass on every source row, then the vertical one, as OpenCV does)."""
        h = src.shape[0]
        dh, dw = self.dst_hw
        products = cv2.multiply(np.take(src, self.cols, axis=1).reshape(h, -1), self.alpha, dtype=cv2.CV_32F)
        products = products.reshape(h, self.taps, dw * 3)
        buf = products[:, 0].copy()
        for j in range(1, self.taps):
            np.add(buf, products[:, j], out=buf)
        acc = buf[self.yi[:, 0]] * self.ya[:, 0][:, None]
        for j in range(1, self.yi.shape[1]):
            np.add(acc, buf[self.yi[:, j]] * self.ya[:, j][:, None], out=acc)
        return np.clip(np.rint(acc), 0, 255, out=acc).astype(np.uint8).reshape(dh, dw, 3)


def replica(frames: list[np.ndarray], n: int, trials: int) -> dict[str, Any]:
    """The replica's bits against cv2 on random frames of the camera size and on random sizes; both costs."""
    rng = np.random.default_rng(16)
    same = 0
    for _ in range(trials):
        img = rng.integers(0, 256, (*FRAME_HW, 3), np.uint8)
        same += np.array_equal(AreaReplica(FRAME_HW, (224, 224))(img),
                               cv2.resize(img, (224, 224), interpolation=cv2.INTER_AREA))
    odd = 0
    for _ in range(trials):
        h, w = (int(v) for v in rng.integers(8, 400, 2))
        dh, dw = int(rng.integers(1, h + 1)), int(rng.integers(1, w + 1))
        if h % dh == 0 and w % dw == 0:  # integer ratios take OpenCV's other (fast) area path
            dw = max(1, dw - 1)
        img = rng.integers(0, 256, (h, w, 3), np.uint8)
        odd += np.array_equal(AreaReplica((h, w), (dh, dw))(img),
                              cv2.resize(img, (dw, dh), interpolation=cv2.INTER_AREA))
    rep = AreaReplica(FRAME_HW, (224, 224))
    load = load1()
    cv_ms = median_ms(lambda i: cv2.resize(frames[i % len(frames)], (224, 224), interpolation=cv2.INTER_AREA), n)
    rep_ms = median_ms(lambda i: rep(frames[i % len(frames)]), n)
    return {"load": load, "trials": trials, "identical_camera_size": same, "identical_random_sizes": odd,
            "cv2_ms": cv_ms, "replica_ms": rep_ms}


def resize_graph(path: Path, layout: str) -> None:
    """An ONNX graph: BGR uint8 1x480x640x3 -> Resize (opset 18, linear, antialias) -> RGB, x*a+b, 1x3x224x224."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from shared.preprocessing import affine_constants

    a, b = affine_constants(REFERENCE)
    h, w = FRAME_HW
    nodes, inits = [], [numpy_helper.from_array(np.array([2, 1, 0], np.int64), "bgr2rgb"),
                        numpy_helper.from_array(a.reshape(1, 3, 1, 1), "a"),
                        numpy_helper.from_array(b.reshape(1, 3, 1, 1), "b")]
    if layout == "nhwc_u8":  # resize the uint8 frame where it lies, then cast and transpose the small one
        inits.append(numpy_helper.from_array(np.array([224, 224], np.int64), "sizes"))
        nodes += [helper.make_node("Resize", ["frame", "", "", "sizes"], ["r"], mode="linear", antialias=1,
                                   axes=[1, 2]),
                  helper.make_node("Cast", ["r"], ["rf"], to=TensorProto.FLOAT),
                  helper.make_node("Transpose", ["rf"], ["t"], perm=[0, 3, 1, 2])]
    else:  # float NCHW throughout, as a model's first layers would see it
        inits.append(numpy_helper.from_array(np.array([1, 3, 224, 224], np.int64), "sizes"))
        nodes += [helper.make_node("Cast", ["frame"], ["f"], to=TensorProto.FLOAT),
                  helper.make_node("Transpose", ["f"], ["ft"], perm=[0, 3, 1, 2]),
                  helper.make_node("Resize", ["ft", "", "", "sizes"], ["t"], mode="linear", antialias=1)]
    nodes += [helper.make_node("Gather", ["t", "bgr2rgb"], ["g"], axis=1),
              helper.make_node("Mul", ["g", "a"], ["m"]),
              helper.make_node("Add", ["m", "b"], ["input"])]
    graph = helper.make_graph(nodes, "resize_in_graph",
                              [helper.make_tensor_value_info("frame", TensorProto.UINT8, [1, h, w, 3])],
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 224, 224])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def ov_ppp_model(algorithm: str) -> Any:
    """OpenVINO PrePostProcessor in front of the normalisation: u8 NHWC BGR 480x640 in, resize + RGB + x*a+b."""
    import openvino as ov
    from openvino import opset13 as ops
    from openvino.preprocess import ColorFormat, PrePostProcessor, ResizeAlgorithm

    a, b = affine_constants_f32()
    param = ops.parameter([1, 3, 224, 224], ov.Type.f32, name="input")
    body = ops.add(ops.multiply(param, ops.constant(a.reshape(1, 3, 1, 1))), ops.constant(b.reshape(1, 3, 1, 1)))
    model = ov.Model([body.output(0)], [param], "ppp_resize")
    ppp = PrePostProcessor(model)
    ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC")).set_color_format(
        ColorFormat.BGR).set_spatial_static_shape(*FRAME_HW)
    ppp.input().model().set_layout(ov.Layout("NCHW"))
    ppp.input().preprocess().convert_element_type(ov.Type.f32).convert_color(ColorFormat.RGB).resize(
        getattr(ResizeAlgorithm, algorithm))
    return ppp.build()


def affine_constants_f32() -> tuple[np.ndarray, np.ndarray]:
    """The recipe's (a, b), float32, as the agent applies them."""
    from shared.preprocessing import affine_constants

    return affine_constants(REFERENCE)


def ort_call(sess: Any) -> Callable[[np.ndarray], np.ndarray]:
    """One ONNX Runtime run on a decoded frame."""
    return lambda x: np.asarray(sess.run(None, {"frame": x[None]})[0])


def ov_call(req: Any) -> Callable[[np.ndarray], np.ndarray]:
    """One OpenVINO infer on a decoded frame."""
    return lambda x: np.asarray(req.infer({0: x[None]})[0])


def on_frames(run: Callable[[np.ndarray], np.ndarray], frames: list[np.ndarray]) -> Callable[[int], Any]:
    """run() on the i-th frame, cycling."""
    return lambda i: run(frames[i % len(frames)])


def in_graph(frames: list[np.ndarray], n: int, tmp: Path) -> list[dict[str, Any]]:
    """Cost per frame of each in-graph resize against the cv2 path, and its pixel distance from the cv2 output."""
    import onnxruntime as ort
    import openvino as ov

    pre = FramePreprocessor(REFERENCE)
    want = [pre.preprocess_into(f, np.empty(pre.output_shape, np.float32)) for f in frames[:20]]
    a = affine_constants_f32()[0].reshape(1, 3, 1, 1)
    out = np.empty(pre.output_shape, np.float32)
    rows = [{"path": "cv2 (FramePreprocessor: INTER_AREA + x*a+b)", "load": load1(),
             "ms": median_ms(lambda i: pre.preprocess_into(frames[i % len(frames)], out), n),
             "max_px": 0.0, "mean_px": 0.0}]
    runs: list[tuple[str, Callable[[np.ndarray], np.ndarray]]] = []
    core = ov.Core()
    for layout in ("nhwc_u8", "nchw_f32"):
        path = tmp / f"resize_{layout}.onnx"
        resize_graph(path, layout)
        for threads in (1, 2):
            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            runs.append((f"ONNX Runtime, Resize {layout}, {threads} thread(s)", ort_call(sess)))
        for threads in (1, 2):
            req = core.compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": threads}).create_infer_request()
            runs.append((f"OpenVINO, Resize {layout}, {threads} thread(s)", ov_call(req)))
    for algorithm in ("RESIZE_LINEAR", "RESIZE_BILINEAR_PILLOW"):
        for threads in (1, 2):
            req = core.compile_model(ov_ppp_model(algorithm), "CPU",
                                     {"INFERENCE_NUM_THREADS": threads}).create_infer_request()
            runs.append((f"OpenVINO PrePostProcessor {algorithm}, {threads} thread(s)", ov_call(req)))
    for name, run in runs:
        px = [np.abs((np.asarray(run(f), np.float32) - w) / a) for f, w in zip(frames[:20], want, strict=True)]
        load = load1()
        rows.append({"path": name, "load": load, "ms": median_ms(on_frames(run, frames), n),
                     "max_px": float(max(p.max() for p in px)), "mean_px": float(np.mean([p.mean() for p in px]))})
        print(f"{name}: {rows[-1]['ms']:.3f} ms (load {load:.2f})")
    return rows


def markdown(doc: dict[str, Any]) -> str:
    """The results file."""
    lines = [f"# bench-decode (640x480 MJPG, reference recipe 3x224x224 rgb INTER_AREA){' QUICK' * doc['quick']}",
             "", machine_line(doc["machine"]), "", f"`uptime` before: `{doc['uptime_before']}`; after: "
             f"`{doc['uptime_after']}`. Each figure below carries the 1-minute load average when it was taken.", "",
             "## 1. Per-stage cost, one thread (median ms)", "",
             "| cv2.setNumThreads | getNumThreads | VideoCapture.read | resize INTER_AREA | resize INTER_LINEAR | "
             "FramePreprocessor (resize + x*a+b) | its process CPU ms | load |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['cv_threads']} | {r['getNumThreads']} | {r['decode_ms']:.3f} | {r['area_ms']:.3f} | "
              f"{r['linear_ms']:.3f} | {r['preprocess_ms']:.3f} | {r['preprocess_cpu_ms']:.3f} | {r['load']:.2f} |"
              for r in doc["stages"]]
    lines += ["", "## 2. Decode + preprocess frames/s: threads vs processes, by cv2 thread setting", "",
              "Median over rounds (each round runs every cell once, interleaved); every sample with its load.", "",
              "| cv2.setNumThreads | mode | n | fps (median) | CPU / wall | frames per CPU-s | samples fps @ load |",
              "|---|---|---:|---:|---:|---:|---|"]
    cells: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for r in doc["scaling"]:
        cells.setdefault((r["cv_threads"], r["mode"], r["n"]), []).append(r)
    for (setting, mode, n), rs in cells.items():
        samples = ", ".join(f"{r['fps']:.0f} @ {r['load']:.2f}" for r in rs)
        cpu = statistics.median(r["cpu_per_wall"] for r in rs)
        per_cpu = statistics.median(r["fps"] / r["cpu_per_wall"] for r in rs)
        lines.append(f"| {setting} | {mode} | {n} | {statistics.median(r['fps'] for r in rs):.1f} | {cpu:.2f} | "
                     f"{per_cpu:.0f} | {samples} |")
    pr = doc["paired"]
    ratio = [r["1"]["per_cpu_s"] / r["default"]["per_cpu_s"] for r in pr]
    fps_ratio = [r["1"]["fps"] / r["default"]["fps"] for r in pr]
    lat_ratio = [r["1"]["preprocess_ms"] / r["default"]["preprocess_ms"] for r in pr]
    lines += ["", f"Paired A/B, cv2.setNumThreads(1) against the default ({doc['cv2_default_threads']}), "
              f"{len(pr)} back-to-back pairs (order alternating), 4 decode+preprocess threads; ratio 1/default, "
              "median [min, max] over pairs:", "",
              f"- frames per CPU-second: {statistics.median(ratio):.3f} [{min(ratio):.3f}, {max(ratio):.3f}]",
              f"- frames/s: {statistics.median(fps_ratio):.3f} [{min(fps_ratio):.3f}, {max(fps_ratio):.3f}]",
              f"- one thread's FramePreprocessor median ms: {statistics.median(lat_ratio):.3f} "
              f"[{min(lat_ratio):.3f}, {max(lat_ratio):.3f}]",
              "- loads: " + ", ".join(f"{r['load']:.2f}" for r in pr)]
    g = doc["gil"]
    lines += ["", f"GIL probe (load {g['load']:.2f}): a pure-Python counter thread ran {g['counter_alone_per_s']:.3g}"
              f" increments/s alone and {g['counter_beside_per_s']:.3g}/s beside one decode+preprocess thread "
              f"(which made {g['decoder_fps_beside_counter']:.0f} fps meanwhile).", ""]
    rp = doc["replica"]
    lines += ["## 3. A same-bits INTER_AREA from primitives", "",
              f"Bit-identical to cv2.resize on {rp['identical_camera_size']}/{rp['trials']} random 640x480 frames "
              f"and {rp['identical_random_sizes']}/{rp['trials']} random non-integer-ratio sizes. Cost (load "
              f"{rp['load']:.2f}): cv2 {rp['cv2_ms']:.3f} ms, replica {rp['replica_ms']:.3f} ms.", "",
              "## 4. Resize in the graph (from the decoded BGR frame to the normalised 1x3x224x224 tensor)", "",
              "| path | median ms | max / mean abs difference from the cv2 path, in 0-255 pixel units | load |",
              "|---|---:|---:|---:|"]
    lines += [f"| {r['path']} | {r['ms']:.3f} | {r['max_px']:.1f} / {r['mean_px']:.2f} | {r['load']:.2f} |"
              for r in doc["in_graph"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run every part and write the results."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0, help="Length of each frames/s sample.")
    ap.add_argument("--rounds", type=int, default=3, help="Interleaved rounds of the scaling table.")
    ap.add_argument("--calls", type=int, default=200, help="Calls per median-ms figure.")
    ap.add_argument("--pairs", type=int, default=10, help="Back-to-back pairs of the cv2-threads A/B.")
    ap.add_argument("--quick", action="store_true", help="Short everything: checks the bench works.")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    if args.quick:
        args.seconds, args.rounds, args.calls = 0.5, 1, 20
    default = cv2.getNumThreads()
    doc: dict[str, Any] = {"machine": machine(), "quick": args.quick, "uptime_before": uptime(),
                           "cv2": cv2.__version__, "cv2_default_threads": default}
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "camera.avi"
        frames = make_video(video, 300, FRAME_HW)
        doc["stages"] = stages(str(video), frames, default, args.calls)
        doc["gil"] = gil_probe(str(video), args.seconds)
        doc["paired"] = paired(str(video), frames, default, args.seconds, 2 if args.quick else args.pairs)
        doc["scaling"] = scaling(str(video), default, args.seconds, args.rounds)
        doc["replica"] = replica(frames, args.calls, 10 if args.quick else 100)
        doc["in_graph"] = in_graph(frames, args.calls, Path(tmp))
    doc["uptime_after"] = uptime()
    write_results("decode" if not args.quick else "decode-quick", doc, markdown(doc), args.out)


if __name__ == "__main__":
    main()
