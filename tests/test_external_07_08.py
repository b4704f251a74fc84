"""An independent student implementation of every graded function of 07 and 08 gets full marks.

The code below was written from the notebooks' contracts (docstrings and exercise text), not from the reference,
and in another style: fc_to_conv loops where the reference transposes and reshapes, conv_as_matrix scatters with
index arrays where the reference loops over taps, layer_table dispatches on small per-type functions with exact
fractions, training_memory sums numpy columns, and max_batch_size searches by bisection instead of dividing. It
is put into the *released* notebooks (what a student receives) and graded through the trusted grader, so the
hidden tests accept a correct solution that is not the reference's.
"""
from __future__ import annotations

import nbformat
import pytest

from grader import cells
from grader.course import REPO_ROOT, Course

pytestmark = pytest.mark.slow

COURSE = Course.at(REPO_ROOT)

FC_TO_CONV = '''
def fc_to_conv(W_fc, b_fc, in_shape):
    C, H, W = (int(n) for n in in_shape)
    if W_fc.ndim != 2 or W_fc.shape[0] != C * H * W:
        raise ValueError(f"W_fc of shape {W_fc.shape} does not fit a volume of {C}x{H}x{W} = {C * H * W} numbers")
    F = W_fc.shape[1]
    if np.ndim(b_fc) != 1 or len(b_fc) != F:
        raise ValueError(f"b_fc must hold one bias per neuron ({F}), got shape {np.shape(b_fc)}")
    w_conv = np.empty((F, C, H, W), dtype=W_fc.dtype)
    position = 0
    for c in range(C):                      # C order: the last axis varies fastest
        for y in range(H):
            for x in range(W):
                w_conv[:, c, y, x] = W_fc[position]
                position += 1
    return w_conv, np.array(b_fc, copy=True)
'''

CONV_AS_MATRIX = '''
def conv_as_matrix(w, b, in_shape, conv_param):
    C, H, W = in_shape
    F, depth, KH, KW = w.shape
    S, P = conv_param['stride'], conv_param['pad']
    if depth != C:
        raise ValueError(f"filters of depth {depth} on a volume of depth {C}")
    out = []
    for size, k in ((H, KH), (W, KW)):
        room = size + 2 * P - k
        if room < 0 or room % S != 0:
            raise ValueError(f"filters of {k} at stride {S} on {size} padded by {P}: {room / S + 1:g} positions")
        out.append(room // S + 1)
    Ho, Wo = out
    f, c, u, v, i, j = np.meshgrid(np.arange(F), np.arange(C), np.arange(KH), np.arange(KW), np.arange(Ho),
                                   np.arange(Wo), indexing='ij')
    y, x = i * S + u - P, j * S + v - P
    inside = (y >= 0) & (y < H) & (x >= 0) & (x < W)
    matrix = np.zeros((C * H * W, F * Ho * Wo), dtype=w.dtype)
    taps = np.broadcast_to(w[:, :, :, :, None, None], f.shape)
    matrix[((c * H + y) * W + x)[inside], ((f * Ho + i) * Wo + j)[inside]] = taps[inside]
    biases = (b[:, None] + np.zeros((1, Ho * Wo), dtype=w.dtype)).reshape(-1).astype(w.dtype)
    return matrix, biases
'''

LAYER_TABLE = '''
def layer_table(arch, input_shape):
    def positions(n, layer, what):
        k, S, P = layer['size'], layer.get('stride', 1), layer.get('pad', 0)
        room = n + 2 * P - k
        if room < 0:
            raise ValueError(f"{what}: window {k} larger than {n} + 2*{P}")
        whole, rest = divmod(room, S)
        mode = layer.get('rounding', 'exact')
        if mode == 'exact' and rest:
            raise ValueError(f"{what}: {room / S + 1:g} positions is not a whole number")
        if mode not in ('exact', 'floor', 'ceil'):
            raise ValueError(f"{what}: unknown rounding {mode}")
        return whole + 1 + (1 if mode == 'ceil' and rest else 0)

    def window(state, layer, depth, what):
        h = positions(state['shape'][1], layer, what + ' height')
        w = positions(state['shape'][2], layer, what + ' width')
        k, S = layer['size'], layer.get('stride', 1)
        return {'shape': (depth, h, w),
                'rf': tuple(r + (k - 1) * j for r, j in zip(state['rf'], state['jump'])),
                'jump': tuple(j * S for j in state['jump'])}

    def conv(state, layer, what):
        C = state['shape'][0]
        g, F, k = layer.get('groups', 1), layer['filters'], layer['size']
        if C % g or F % g:
            raise ValueError(f"{what}: groups {g} vs depths {C} -> {F}")
        new = window(state, layer, F, what)
        weights = F * k * k * (C // g)
        return new, weights, F if layer.get('bias', True) else 0, weights * new['shape'][1] * new['shape'][2], 0

    def whole_input(state, depth):
        _, H, W = state['shape']
        rf = (state['rf'][0] + (H - 1) * state['jump'][0], state['rf'][1] + (W - 1) * state['jump'][1])
        return {'shape': (depth, 1, 1), 'rf': rf, 'jump': state['jump']}

    def fc(state, layer, what):
        D = state['shape'][0] * state['shape'][1] * state['shape'][2]
        return whole_input(state, layer['units']), D * layer['units'], layer['units'], D * layer['units'], 0

    def block(state, layer, what):
        ends, weights, biases, madds, inner = [], 0, 0, 0, 0
        for branch in layer['branches']:
            current = state
            for part in branch:
                current, *counts = step(current, part, what)
                weights, biases, madds = weights + counts[0], biases + counts[1], madds + counts[2]
                inner += current['shape'][0] * current['shape'][1] * current['shape'][2] + counts[3]
            ends.append(current)
        if len({e['shape'][1:] for e in ends}) > 1:
            raise ValueError(f"{what}: branches end in sizes {[e['shape'][1:] for e in ends]}")
        depths = [e['shape'][0] for e in ends]
        if layer['type'] == 'add' and len(set(depths)) > 1:
            raise ValueError(f"{what}: cannot add depths {depths}")
        depth = depths[0] if layer['type'] == 'add' else sum(depths)
        new = {'shape': (depth,) + ends[0]['shape'][1:],
               'rf': tuple(max(e['rf'][a] for e in ends) for a in range(2)),
               'jump': tuple(max(e['jump'][a] for e in ends) for a in range(2))}
        return new, weights, biases, madds, inner

    handlers = {
        'conv': conv,
        'pool': lambda s, l, what: (window(s, l, s['shape'][0], what), 0, 0, 0, 0),
        'relu': lambda s, l, what: (s, 0, 0, 0, 0),
        'bn': lambda s, l, what: (s, s['shape'][0], s['shape'][0], 0, 0),
        'fc': fc,
        'gap': lambda s, l, what: (whole_input(s, s['shape'][0]), 0, 0, 0, 0),
        'concat': block,
        'add': block,
    }

    def step(state, layer, what):
        kind = layer.get('type')
        if kind not in handlers:
            raise ValueError(f"{what}: no layer type {kind!r}")
        return handlers[kind](state, layer, layer.get('name', kind))

    state = {'shape': tuple(int(n) for n in input_shape), 'rf': (1, 1), 'jump': (1, 1)}
    C, H, W = state['shape']
    table = [dict(name='input', type='input', shape=state['shape'], activations=C * H * W, weights=0, biases=0,
                  mult_adds=0, rf=(1, 1))]
    for number, layer in enumerate(arch):
        state, weights, biases, madds, inner = step(state, layer, f"layer {number}")
        c, h, w = state['shape']
        table.append(dict(name=layer.get('name', layer['type']), type=layer['type'], shape=state['shape'],
                          activations=c * h * w + inner, weights=weights, biases=biases, mult_adds=madds,
                          rf=state['rf']))
    return table
'''

TRAINING_MEMORY = '''
def training_memory(arch, input_shape, batch=1, dtype='float32', optimizer='sgd'):
    sizes = dict(float16=2, float32=4, float64=8)
    copies = dict(sgd=2, momentum=3, nesterov=3, adagrad=3, rmsprop=3, adam=4)
    if dtype not in sizes or optimizer not in copies:
        raise ValueError(f"unknown dtype {dtype!r} or optimizer {optimizer!r}")
    if type(batch) is not int and not isinstance(batch, np.integer) or batch < 1:
        raise ValueError(f"batch {batch!r} is not a positive int")
    table = layer_table(arch, input_shape)
    columns = {key: np.array([row[key] for row in table], dtype=np.int64)
               for key in ('activations', 'weights', 'biases')}
    b = sizes[dtype]
    result = {'activations': int(columns['activations'][1:].sum()) * 2 * int(batch) * b,
              'parameters': int(columns['weights'].sum() + columns['biases'].sum()) * copies[optimizer] * b,
              'data': int(columns['activations'][0]) * int(batch) * b}
    result['total'] = sum(result.values())
    return result
'''

MAX_BATCH_SIZE = '''
def max_batch_size(arch, memory_bytes, input_shape, dtype='float32', optimizer='sgd'):
    if memory_bytes < 0:
        raise ValueError("negative memory")
    def fits(batch):
        return training_memory(arch, input_shape, batch, dtype, optimizer)['total'] <= memory_bytes
    if not fits(1):
        return 0
    low, high = 1, 2
    while fits(high):
        low, high = high, high * 2
    while high - low > 1:                       # fits(low) and not fits(high)
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low
'''

IMPLEMENTATIONS = {
    "07_fc_to_conv": {"fc_to_conv": FC_TO_CONV, "conv_as_matrix": CONV_AS_MATRIX},
    "08_vgg_memory": {"layer_table": LAYER_TABLE, "training_memory": TRAINING_MEMORY,
                      "max_batch_size": MAX_BATCH_SIZE},
}


def grade(path, assignment):
    """Grade one submitted notebook through the trusted grader; the one place that calls the grading core."""
    from grader.trusted import grade_notebook

    return grade_notebook(path, assignment, COURSE, sandbox="none")


def test_every_graded_function_has_an_independent_implementation():
    for assignment, functions in IMPLEMENTATIONS.items():
        [source] = COURSE.source_notebooks(assignment)
        solved = {cells.grade_id(c) for c in cells.read(source).cells if cells.is_solution(c)}
        assert solved == set(functions), assignment


@pytest.mark.parametrize("assignment", sorted(IMPLEMENTATIONS))
def test_independent_implementation_gets_full_marks(assignment, tmp_path):
    [release] = COURSE.release_notebooks(assignment)
    nb = cells.read(release)
    filled = set()
    for cell in nb.cells:
        if cells.is_solution(cell):
            cell.source = IMPLEMENTATIONS[assignment][cells.grade_id(cell)].strip("\n")
            filled.add(cells.grade_id(cell))
    assert filled == set(IMPLEMENTATIONS[assignment])
    path = tmp_path / release.name
    nbformat.write(nb, str(path))
    result = grade(path, assignment)
    assert not result.problem, result.problem
    failed = {c.grade_id: c.message for c in result.cells if not c.passed}
    assert result.score == result.max_score > 0, failed
    assert not result.report.findings, [f.describe() for f in result.report.findings]
