"""The alpha-beta model of a data-parallel step in README.md: ring all-reduce of 25 MiB buckets overlapping backward.
Usage: python3 step_model.py [seconds of compute per sequence of the looping checkpoint, default 0.17]"""
def params(V,d,f,L,H,KV,hd,tied=True,qknorm=True):
    per = d*H*hd + 2*d*KV*hd + H*hd*d + 3*d*f + 2*d + (2*hd if qknorm else 0)
    return V*d + L*per + d + (0 if tied else V*d)
P_loop = params(257,128,256,8,4,2,32)
P_1b = params(32000,2048,8192,16,32,8,64,tied=False,qknorm=False)
print("looping params", P_loop, "1B params", P_1b)
alpha, beta, mem = 10e-6, 11e9, 10e9
def ring(b,N): return 2*(N-1)*alpha + 2*(N-1)/N*b/beta
def step(P, Tc, N, bucket=25*2**20, host_copies=True):
    S = 4*P; k = -(-S//bucket); sizes=[bucket]*(k-1)+[S-bucket*(k-1)]
    comm = sum(ring(b,N) + (3*b/mem if host_copies else 0) for b in sizes)
    last = ring(sizes[-1],N) + (3*sizes[-1]/mem if host_copies else 0)
    window = (2/3)*Tc*(1 - sizes[0]/S)   # backward after the first bucket is ready
    exposed = max(last, comm - window)
    return k, comm, exposed, Tc + exposed
import sys
T1seq = float(sys.argv[1]) if len(sys.argv)>1 else 0.17
for N in (8,64):
    k,c,e,t = step(P_loop, T1seq, N)
    print(f"looping N={N}: buckets {k}, comm {c*1e3:.2f} ms, exposed {e*1e3:.2f} ms, step {t*1e3:.1f} ms (compute {T1seq*1e3:.0f}), efficiency {T1seq/t:.3f}")
for name, Tc, hc in (("CPU 2 TFLOP/s", 6*P_1b*16384/2e12, True), ("GPU 400 TFLOP/s, NCCL", 6*P_1b*16384/4e14, False)):
    for N in (8,64):
        k,c,e,t = step(P_1b, Tc, N, host_copies=hc)
        print(f"1B {name} N={N}: buckets {k}, comm {c:.3f} s, exposed {e:.3f} s, step {t:.2f} s (compute {Tc:.2f} s), efficiency {Tc/t:.2f}")
