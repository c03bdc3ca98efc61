#!/usr/bin/env python3
"""make-seeds.py - write the idx and protocol seed corpora of tests/fuzz/corpus.

The checkpoint seeds come from the harness itself:
  FUZZ_CHECKPOINT_SEEDS=tests/fuzz/corpus/checkpoint build-fuzz/tests/fuzz/fuzz-checkpoint -runs=0
The protocol seeds refer to the jobs of fuzz-protocol's template database
(1 paused, 2 done, 3 failed, 4 queued, 5 killed) and its dataset "tiny".
The first byte of a protocol seed is the chunking (0: write all at once).
"""
import base64, gzip, json, os, struct

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'corpus')
def idx_img(n, r, c, fill=7): return struct.pack('>IIII', 0x803, n, r, c) + bytes((i*fill) % 256 for i in range(n*r*c))
def idx_lab(n, mod=10): return struct.pack('>II', 0x801, n) + bytes(i % mod for i in range(n))
def pair(img, lab): return struct.pack('<H', len(img)) + img + lab
def w(d, name, b):
    open(os.path.join(root, d, name), 'wb').write(b)
w('idx', 'plain-3x2x2', pair(idx_img(3, 2, 2), idx_lab(3)))
w('idx', 'plain-1x1x1', pair(idx_img(1, 1, 1), idx_lab(1)))
w('idx', 'plain-0-images', pair(idx_img(0, 28, 28), idx_lab(0)))
w('idx', 'gzip-4x3x2', pair(gzip.compress(idx_img(4, 3, 2), mtime=0), gzip.compress(idx_lab(4), mtime=0)))
w('idx', 'gzip-images-plain-labels', pair(gzip.compress(idx_img(2, 5, 5), mtime=0), idx_lab(2)))
w('idx', 'near-label-10', pair(idx_img(2, 2, 2), struct.pack('>II', 0x801, 2) + b'\x03\x0a'))
w('idx', 'near-count-mismatch', pair(idx_img(3, 2, 2), idx_lab(2)))
w('idx', 'near-trailing', pair(idx_img(2, 2, 2) + b'x', idx_lab(2)))
w('idx', 'near-gzip-truncated', pair(gzip.compress(idx_img(3, 4, 4), mtime=0)[:-5], idx_lab(3)))
w('idx', 'near-big-dims', pair(struct.pack('>IIII', 0x803, 1000000, 4096, 4096), idx_lab(1)))

def msg(method, params=None, **kw):
    m = {'method': method}
    if params is not None: m['parameters'] = params
    m.update(kw)
    return json.dumps(m).encode() + b'\0'
tiny = {"dataset": "tiny", "epochs": 2, "batch_size": 8, "eval_batch_size": 8, "val_size": 8, "hidden": [4], "threads": 1}
# a model-only file for init_from: net.1.weight [4,16], net.1.bias [4], net.3.weight [10,4], net.3.bias [10]
def st(tensors, meta):
    hdr = {'__metadata__': meta} if meta else {}
    off = 0; data = b''
    for name, shape in tensors:
        n = 1
        for s in shape: n *= s
        hdr[name] = {'dtype': 'F32', 'shape': shape, 'data_offsets': [off, off + 4*n]}
        data += struct.pack('<%df' % n, *[0.01*i for i in range(n)]); off += 4*n
    h = json.dumps(hdr).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    return struct.pack('<Q', len(h)) + h + data
model = st([('net.1.weight', [4, 16]), ('net.1.bias', [4]), ('net.3.weight', [10, 4]), ('net.3.bias', [10])], {'format': 'pt'})
badmodel = st([('net.1.weight', [4, 15]), ('net.1.bias', [4])], None)
P = lambda *ms: b'\0' + b''.join(ms)   # first byte: chunking (0 = whole)
seeds = {
 'get-info': P(msg('org.varlink.service.GetInfo')),
 'get-interface': P(msg('org.varlink.service.GetInterfaceDescription', {'interface': 'io.traind'}), msg('org.varlink.service.GetInterfaceDescription', {'interface': 'x.y'})),
 'list-status': P(msg('io.traind.List', {}), *[msg('io.traind.Status', {'id': i}) for i in range(1, 7)]),
 'start-default': P(msg('io.traind.Start', {})),
 'start-tiny': P(msg('io.traind.Start', {'name': 'fz', 'config': tiny, 'keep': 2}), msg('io.traind.List')),
 'start-init-from': P(msg('io.traind.Start', {'config': tiny, 'init_from': base64.b64encode(model).decode()})),
 'start-init-bad': P(msg('io.traind.Start', {'config': tiny, 'init_from': base64.b64encode(badmodel).decode()})),
 'start-bad-config': P(msg('io.traind.Start', {'config': {'epochs': 0}}), msg('io.traind.Start', {'config': dict(tiny, batch_size=100000)}), msg('io.traind.Start', {'config': dict(tiny, dataset='../etc')})),
 'pause-resume-kill': P(msg('io.traind.Pause', {'id': 4}), msg('io.traind.Resume', {'id': 4, 'weights_only': True}), msg('io.traind.Kill', {'id': 4}), msg('io.traind.Resume', {'id': 1}), msg('io.traind.Kill', {'id': 1, 'after_epoch': 2}), msg('io.traind.Pause', {'id': 2})),
 'history-checkpoints': P(*[msg('io.traind.History', {'id': i}) for i in (1, 2, 5)], *[msg('io.traind.Checkpoints', {'id': i}) for i in (1, 2, 4)]),
 'eval-export': P(msg('io.traind.Eval', {'id': 1}), msg('io.traind.Eval', {'id': 2, 'split': 'test', 'epoch': 3}), msg('io.traind.Eval', {'id': 4}), msg('io.traind.Export', {'id': 5}), msg('io.traind.Export', {'id': 2, 'epoch': 1})),
 'wait-watch': P(msg('io.traind.Wait', {'id': 2}), msg('io.traind.Wait', {'id': 4, 'states': ['paused'], 'timeout': 0}), msg('io.traind.Watch', {'id': 2}, more=True), msg('io.traind.Wait', {'id': 3, 'epoch': 1})),
 'watch-pending': P(msg('io.traind.Watch', {'id': 4}, more=True), msg('io.traind.List')),
 'oneway': P(msg('io.traind.List', oneway=True), msg('io.traind.Pause', {'id': 4}, oneway=True), msg('io.traind.Status', {'id': 4})),
 'bad-frames': P(b'{}\0', b'[]\0', b'{"method":1}\0', b'{"method":"io.traind.List","parameters":[]}\0', b'not json\0', b'{"method":"x","more":"yes"}\0', b'{"method":"a.b.C"}\0', b'{"method":"io.traind.Nope"}\0'),
 'bad-params': P(msg('io.traind.Status', {'id': 0}), msg('io.traind.Status', {'id': 'x'}), msg('io.traind.Status', {'id': 99}), msg('io.traind.Status', {'id': 1, 'zz': 1}), msg('io.traind.Wait', {'id': 1, 'states': []}), msg('io.traind.Wait', {'id': 1, 'timeout': -1}), msg('io.traind.Eval', {'id': 1, 'split': 'train'}), msg('io.traind.Start', {'name': 'a\u0001'})),
 'chunked': bytes([5]) + msg('io.traind.List') + msg('io.traind.Status', {'id': 1}) + msg('org.varlink.service.GetInfo'),
 'wait-pending-disconnect': P(msg('io.traind.Wait', {'id': 4, 'epoch': 2})),
 'partial-frame': P(msg('io.traind.List'), b'{"method":"io.traind.Li'),
}
for k, v in seeds.items(): w('protocol', k, v)
print(f"wrote {len(seeds)} protocol seeds and the idx seeds under {root}")

# The dataset formats (fuzz-dataset.c's modes).
import io, sys, zipfile
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import dsformats as F
for d in ('npy', 'npz', 'dsst', 'csv', 'dsjson'):
    os.makedirs(os.path.join(root, d), exist_ok=True)
def npy_pair(x, y): return struct.pack('<H', len(x)) + x + y
px4 = bytes([0, 64, 128, 255])
w('npy', 'u8-2x2', npy_pair(F.npy_bytes('u1', (1, 2, 2), px4), F.npy_bytes('u1', (1,), b'\0')))
w('npy', 'u8-3-images-i8-labels', npy_pair(F.npy_bytes('u1', (3, 2, 2), px4 * 3), F.npy_bytes('i8', (3,), struct.pack('<3q', 0, 1, 2))))
w('npy', 'f32-nhwc', npy_pair(F.npy_bytes('f4', (1, 2, 2, 1), struct.pack('<4f', 0, .5, 1, .25)), F.npy_bytes('u1', (1,), b'\1')))
w('npy', 'v2-header', npy_pair(F.npy_bytes('u1', (1, 2, 2), px4, version=2), F.npy_bytes('u1', (1,), b'\0')))
w('npy', 'near-big-endian', npy_pair(F.npy_bytes('f4', (1, 2, 2), struct.pack('>4f', 0, .5, 1, .25), descr='>f4'), F.npy_bytes('u1', (1,), b'\0')))
w('npy', 'near-fortran', npy_pair(F.npy_bytes('u1', (1, 2, 2), px4, fortran=True), F.npy_bytes('u1', (1,), b'\0')))
w('npy', 'near-header-lies', npy_pair(F.npy_bytes('u1', (100000, 2, 2), px4), F.npy_bytes('u1', (1,), b'\0')))
w('npy', 'near-nan', npy_pair(F.npy_bytes('f4', (1, 2, 2), struct.pack('<4f', 0, float('nan'), 1, 0)), F.npy_bytes('u1', (1,), b'\0')))
w('npy', 'near-negative-label', npy_pair(F.npy_bytes('u1', (1, 2, 2), px4), F.npy_bytes('i8', (1,), struct.pack('<q', -1))))
def npz_bytes(splits, compress):
    b = io.BytesIO()
    with zipfile.ZipFile(b, 'w', zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as z:
        for s, (shape, px, lab) in splits.items():
            info = zipfile.ZipInfo('x_%s.npy' % s, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
            z.writestr(info, F.npy_bytes('u1', shape, px))
            info = zipfile.ZipInfo('y_%s.npy' % s, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = info.compress_type
            z.writestr(info, F.npy_bytes('u1', (shape[0],), lab))
    return b.getvalue()
small = {'train': ((2, 2, 2), px4 * 2, b'\0\1'), 'test': ((1, 2, 2), px4, b'\1')}
w('npz', 'deflated', npz_bytes(small, True))
w('npz', 'stored', npz_bytes(small, False))
w('npz', 'near-missing-test', npz_bytes({'train': small['train']}, False))
w('dsst', 'u8-labels-i64', F.st_bytes([('images', 'u1', (2, 2, 2), px4 * 2), ('labels', 'i8', (2,), struct.pack('<2q', 0, 3))]))
w('dsst', 'f32-nchw', F.st_bytes([('images', 'f4', (1, 1, 2, 2), struct.pack('<4f', 0, .5, 1, .25)), ('labels', 'u1', (1,), b'\0')]))
w('dsst', 'near-extra-tensor', F.st_bytes([('images', 'u1', (1, 2, 2), px4), ('labels', 'u1', (1,), b'\0'), ('x', 'u1', (1,), b'\0')]))
w('dsst', 'near-count-mismatch', F.st_bytes([('images', 'u1', (2, 2, 2), px4 * 2), ('labels', 'u1', (1,), b'\0')]))
w('csv', 'plain-header', b'\0label,a,b,c,d\n1,0,10,255,3\n0,1,2,3,4\n')
w('csv', 'plain-no-header-crlf', b'\0' + b'2,0,10,255,3\r\n0,1,2,3,4\r\n')
w('csv', 'float32', b'\1' + b'0,0.5,-1e3,2.25,7\n')
w('csv', 'nhwc-2x3x2', b'\2' + b'1,' + b','.join(b'%d' % i for i in range(12)) + b'\n')
w('csv', 'names', b'\3' + b'2,9,9,9,9\n')
w('csv', 'near-ragged', b'\0' + b'1,2,3,4,5\n1,2,3\n')
w('csv', 'near-pixel-256', b'\0' + b'1,2,3,4,256\n')
w('dsjson', 'names', b'{"classes": ["r", "g", "b"]}')
w('dsjson', 'full', b'{"classes": ["r", "g", "b", "x"], "layout": "NHWC", "height": 2, "width": 2, "channels": 3, "mean": [0.5, 0.5, 0.5], "std": [0.2, 0.3, 0.4]}')
w('dsjson', 'nchw', b'{"layout": "NCHW"}')
w('dsjson', 'near-two-names', b'{"classes": ["r", "g"]}')
w('dsjson', 'near-std-zero', b'{"mean": [0, 0, 0], "std": [1, 0, 1]}')
w('dsjson', 'near-duplicate-key', b'{"layout": "NHWC", "layout": "NCHW"}')
