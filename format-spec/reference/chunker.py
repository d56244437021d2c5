# A second implementation of the version-2 chunker, from the rules written in the spec.
import blake3, math
key = bytes(range(32))
tab = blake3.blake3(b"cairn gear table", key=key).digest(length=2048)
gear = [int.from_bytes(tab[8*i:8*i+8], 'little') for i in range(256)]
print([f"{g:016x}" for g in gear[:3]])
MASKS = [0,0,0,0,0,0x0000000001804110,0x0000000001803110,0x0000000018035100,0x0000001800035300,0x0000019000353000,0x0000590003530000,0x0000d90003530000,0x0000d90103530000,0x0000d90303530000,0x0000d90313530000,0x0000d90f03530000,0x0000d90303537000,0x0000d90703537000,0x0000d90707537000,0x0000d91707537000,0x0000d91747537000,0x0000d91767537000,0x0000d93767537000,0x0000d93777537000,0x0000d93777577000,0x0000db3777577000]
avg=8192; mn=2048; mx=32768; norm=1
bits = round(math.log2(avg))
ms, ml = MASKS[bits+norm], MASKS[bits-norm]
M=(1<<64)-1
def cut(d):
    n = len(d)
    if n <= mn: return n
    rem = min(n, mx)
    center = avg if rem >= avg else rem
    h = 0
    # bytes i from mn, hashed one at a time; i < center uses mask_s, else mask_l;
    # a byte is tested only if it is part of a whole pair: i < 2*floor(rem/2)
    last = 2*(rem//2)
    for i in range(mn, last):
        h = ((h << 1) + gear[d[i]]) & M
        mask = ms if i < center else ml
        if h & mask == 0: return i
    return rem
d = blake3.blake3(b"cairn chunker test").digest(length=1<<20)
cuts=[]; pos=0
while pos < len(d) and len(cuts) < 8:
    n = max(cut(d[pos:]),1); pos += n; cuts.append(pos)
print(cuts)
