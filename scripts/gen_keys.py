"""A config with many keys, for the scale benchmarks: `python3 gen_keys.py N
UPSTREAM_URL [REDIS_URL]` prints it. Key i's secret is sk-bench-{i:06d}; its
digest (sha256:...) is what the file holds, as a real deployment's would.
Every key has rate limits and a quota; every tenth a budget and one of 100
teams, so every check the loader runs has work to do."""
import hashlib
import sys


def secret(i):
    return f"sk-bench-{i:06d}"


def config(n, upstream, redis=None, listen="127.0.0.1:{port}"):
    out = [f"[server]\nlisten = {listen}\naccess_log = off\n",
           f"[backend mock]\nurl = {upstream}\napi_key = sk-upstream-bench\n"]
    if redis:
        out.append(f"[redis]\nurl = {redis}\n")
    out.append("[model gpt-4o]\ninput_price = 2.50\noutput_price = 10\n")
    out += [f"[team t{t}]\nrpm = 100000\nbudget = 1000\nbudget_period = month\n" for t in range(100)]
    for i in range(n):
        digest = hashlib.sha256(secret(i).encode()).hexdigest()
        extra = f"team = t{i % 100}\nbudget = 10\nbudget_period = day\n" if i % 10 == 0 else ""
        out.append(f"[key k{i}]\nkey = sha256:{digest}\nrpm = 600\ninput_tpm = 100000\n"
                   f"output_tpm = 100000\nquota = 1000000\nquota_period = month\n{extra}")
    return "\n".join(out)


if __name__ == "__main__":
    print(config(int(sys.argv[1]), sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None,
                 listen="127.0.0.1:18080"))
