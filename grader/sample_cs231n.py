"""Correct solutions in the plain style of public CS231n assignment-2 code, for the sample class's
``sample-cs231n`` student.

They compute the right numbers, as most students' solutions do, but follow the CS231n habits rather than this
workbook's side rules: filters that do not fit are caught with ``assert`` (an ``AssertionError``, not the
contract's ``ValueError``), pooling output sizes are rounded down with ``//`` instead of refused, and outputs are
allocated with ``np.zeros(shape)``, so float32 inputs give float64 outputs. Points per aspect mean that such a
student loses only those side rules' points (tests/test_course_points.py holds every layer to at least 80%).

Each entry is the body of one solution cell's function, indented as in the cell; the rest of the notebook is
solved with the source notebook's own solutions.
"""
from __future__ import annotations

CS231N_STYLE: dict[str, dict[str, str]] = {
    "02_conv_forward": {
        "conv_forward_naive": """\
    stride, pad = conv_param['stride'], conv_param['pad']
    N, C, H, W = x.shape
    F, C, HH, WW = w.shape
    assert (H + 2 * pad - HH) % stride == 0, 'height does not work'
    assert (W + 2 * pad - WW) % stride == 0, 'width does not work'
    H_out = 1 + (H + 2 * pad - HH) // stride
    W_out = 1 + (W + 2 * pad - WW) // stride
    x_padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), 'constant')
    out = np.zeros((N, F, H_out, W_out))
    for n in range(N):
        for f in range(F):
            for i in range(H_out):
                for j in range(W_out):
                    h0, w0 = i * stride, j * stride
                    out[n, f, i, j] = np.sum(x_padded[n, :, h0:h0 + HH, w0:w0 + WW] * w[f]) + b[f]
    cache = (x, w, b, conv_param)
    return out, cache
""",
    },
    "03_conv_backward": {
        "conv_backward_naive": """\
    x, w, b, conv_param = cache
    stride, pad = conv_param['stride'], conv_param['pad']
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    _, _, H_out, W_out = dout.shape
    x_padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), 'constant')
    dx_padded = np.zeros_like(x_padded)
    dw = np.zeros_like(w)
    db = np.zeros_like(b)
    for n in range(N):
        for f in range(F):
            db[f] += np.sum(dout[n, f])
            for i in range(H_out):
                for j in range(W_out):
                    h0, w0 = i * stride, j * stride
                    dw[f] += x_padded[n, :, h0:h0 + HH, w0:w0 + WW] * dout[n, f, i, j]
                    dx_padded[n, :, h0:h0 + HH, w0:w0 + WW] += w[f] * dout[n, f, i, j]
    dx = dx_padded[:, :, pad:pad + H, pad:pad + W]
    return dx, dw, db
""",
    },
    "04_pooling": {
        "max_pool_forward_naive": """\
    N, C, H, W = x.shape
    PH, PW, S = pool_param['pool_height'], pool_param['pool_width'], pool_param['stride']
    H_out = 1 + (H - PH) // S
    W_out = 1 + (W - PW) // S
    out = np.zeros((N, C, H_out, W_out))
    for n in range(N):
        for c in range(C):
            for i in range(H_out):
                for j in range(W_out):
                    out[n, c, i, j] = np.max(x[n, c, i * S:i * S + PH, j * S:j * S + PW])
    cache = (x, pool_param)
    return out, cache
""",
        "max_pool_backward_naive": """\
    x, pool_param = cache
    N, C, H, W = x.shape
    PH, PW, S = pool_param['pool_height'], pool_param['pool_width'], pool_param['stride']
    _, _, H_out, W_out = dout.shape
    dx = np.zeros_like(x)
    for n in range(N):
        for c in range(C):
            for i in range(H_out):
                for j in range(W_out):
                    window = x[n, c, i * S:i * S + PH, j * S:j * S + PW]
                    a, b = np.unravel_index(np.argmax(window), window.shape)
                    dx[n, c, i * S + a, j * S + b] += dout[n, c, i, j]
    return dx
""",
    },
    # The capstone in the style of CS231n's layers.py, optim.py, ThreeLayerConvNet and Solver: the same numbers,
    # written differently (probabilities then their log, the ConvNet as conv-relu-pool blocks, the training loop
    # as one loop over iterations); the L2 loss does not check that the shapes agree.
    "09_train_convnet": {
        "softmax_loss": """\
    shifted_logits = scores - np.max(scores, axis=1, keepdims=True)
    Z = np.sum(np.exp(shifted_logits), axis=1, keepdims=True)
    log_probs = shifted_logits - np.log(Z)
    probs = np.exp(log_probs)
    N = scores.shape[0]
    loss = -np.sum(log_probs[np.arange(N), y]) / N
    dx = probs.copy()
    dx[np.arange(N), y] -= 1
    dx /= N
    return loss, dx
""",
        "l2_loss": """\
    N = pred.shape[0]
    loss = np.sum((pred - target) ** 2) / (2 * N)
    dx = (pred - target) / N
    return loss, dx
""",
        "convnet_loss": """\
    W1, b1, W2, b2 = params['W1'], params['b1'], params['W2'], params['b2']
    W3, b3, W4, b4 = params['W3'], params['b3'], params['W4'], params['b4']
    pool_param = {'pool_height': 2, 'pool_width': 2, 'stride': 2}

    def conv_relu_pool_forward(x, w, b):
        a, conv_cache = conv_forward(x, w, b, {'stride': 1, 'pad': (w.shape[2] - 1) // 2})
        s, relu_cache = relu_forward(a)
        out, pool_cache = max_pool_forward(s, pool_param)
        return out, (conv_cache, relu_cache, pool_cache)

    def conv_relu_pool_backward(dout, cache):
        conv_cache, relu_cache, pool_cache = cache
        ds = max_pool_backward(dout, pool_cache)
        da = relu_backward(ds, relu_cache)
        return conv_backward(da, conv_cache)

    out1, cache1 = conv_relu_pool_forward(X, W1, b1)
    out2, cache2 = conv_relu_pool_forward(out1, W2, b2)
    a3, fc_cache = affine_forward(out2, W3, b3)
    out3, relu_cache = relu_forward(a3)
    scores, scores_cache = affine_forward(out3, W4, b4)
    if y is None:
        return scores

    grads = {}
    loss, dscores = data_loss(scores, y)
    dout3, grads['W4'], grads['b4'] = affine_backward(dscores, scores_cache)
    da3 = relu_backward(dout3, relu_cache)
    dout2, grads['W3'], grads['b3'] = affine_backward(da3, fc_cache)
    dout1, grads['W2'], grads['b2'] = conv_relu_pool_backward(dout2, cache2)
    _, grads['W1'], grads['b1'] = conv_relu_pool_backward(dout1, cache1)
    return loss, grads
""",
        "sgd_momentum": """\
    v = config.get('velocity', np.zeros_like(w))
    mu, learning_rate = config['momentum'], config['learning_rate']
    v = mu * v - learning_rate * dw
    next_w = w + v
    config['velocity'] = v
    return next_w, config
""",
        "train": """\
    rng = np.random.default_rng(seed)
    num_train = X.shape[0]
    iterations_per_epoch = (num_train + batch_size - 1) // batch_size
    model = {k: np.array(v, copy=True) for k, v in params.items()}
    optim_configs = {p: {k: v for k, v in optim_config.items()} for p in model}
    history = {'loss': []}
    bar = tqdm(range(num_epochs * iterations_per_epoch), disable=not progress)
    for t in bar:
        if t % iterations_per_epoch == 0:
            perm = rng.permutation(num_train)
        i = t % iterations_per_epoch
        batch_mask = perm[i * batch_size:(i + 1) * batch_size]
        loss, grads = loss_fn(model, X[batch_mask], y[batch_mask])
        history['loss'].append(float(loss))
        for p, w in model.items():
            next_w, next_config = update_rule(w, grads[p], optim_configs[p])
            model[p] = next_w
            optim_configs[p] = next_config
        bar.set_description(f'loss {loss:.3f}')
        if evaluate is not None and (t + 1) % iterations_per_epoch == 0:
            for key, value in evaluate(model).items():
                if key not in history:
                    history[key] = []
                history[key].append(value)
    return model, history
""",
    },
}
