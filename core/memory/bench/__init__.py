"""Search benchmarks: CISI quality (``bench_cisi``) and synthetic scale (``bench_scale``)."""
