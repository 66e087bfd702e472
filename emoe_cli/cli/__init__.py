"""The console entries that run things (emoe-run, emoe-eval, emoe-inspect, emoe-pretrain-vit):
the top layer, which may import every other; emoe-report, emoe-grid and emoe-routing stay
beside the one package each of them reads."""
