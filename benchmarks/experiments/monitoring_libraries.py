"""Issue 29: which library runs the monitoring's tests. One window with each: 12 numeric features
(571 reference rows, 200 current; the default model's validation split and the window size), the
predicted class, and for NannyML also CBPE. Prints the library's import time and one window's time.

Each library in a virtual environment of its own, made from the project's Python (python -m venv
/tmp/libbench/NAME; NAME/bin/pip install scipy | "evidently==0.7.*" | "nannyml==0.13.*" | alibi-detect,
plus pandas; Evidently 0.7.23 needs pandas<3, NannyML 0.13.1 also statsmodels), then
    /tmp/libbench/NAME/bin/python benchmarks/experiments/monitoring_libraries.py NAME
What each would add to the project: .venv/bin/pip install --dry-run LIB ("Would install ...").
"""
import sys, time
lib = sys.argv[1]
t0 = time.perf_counter()
if lib == "scipy":
    from scipy import stats
elif lib == "evidently":
    from evidently import Report, Dataset, DataDefinition
    from evidently.presets import DataDriftPreset
elif lib == "nannyml":
    import nannyml as nml
elif lib == "alibi-detect":
    from alibi_detect.cd import KSDrift, ChiSquareDrift
imp = time.perf_counter() - t0
import numpy as np, pandas as pd
rng = np.random.default_rng(0)
F = [f"f{i}" for i in range(12)]
ref = pd.DataFrame(rng.normal(size=(571, 12)), columns=F)
cur = pd.DataFrame(rng.normal(0.3, 1, size=(200, 12)), columns=F)
for d in (ref, cur):
    d["cls"] = rng.choice(list("abcd"), len(d))
    p = rng.dirichlet(np.ones(4) * 0.3, len(d)); d[[f"p_{c}" for c in "abcd"]] = p
    d["pred"] = np.array(list("abcd"))[p.argmax(1)]; d["y"] = d["pred"]
def run():
    if lib == "scipy":
        ps = [stats.ks_2samp(ref[f], cur[f]).pvalue for f in F]
        t = pd.crosstab(pd.concat([ref.cls, cur.cls]), np.r_[np.zeros(len(ref)), np.ones(len(cur))])
        ps.append(stats.chi2_contingency(t).pvalue)
        return ps, cur[[f"p_{c}" for c in "abcd"]].max(1).mean()  # the CBPE estimate
    elif lib == "evidently":
        dd = DataDefinition(numerical_columns=F, categorical_columns=["cls"])
        r = Report([DataDriftPreset()]).run(Dataset.from_pandas(cur[F + ["cls"]], data_definition=dd),
                                           Dataset.from_pandas(ref[F + ["cls"]], data_definition=dd))
        r.dict()
    elif lib == "nannyml":
        ud = nml.UnivariateDriftCalculator(column_names=F + ["cls"], continuous_methods=["kolmogorov_smirnov"],
                                           categorical_methods=["chi2"], chunk_size=200)
        ud.fit(ref); ud.calculate(cur)
        cb = nml.CBPE(y_pred_proba={c: f"p_{c}" for c in "abcd"}, y_pred="pred", y_true="y",
                      problem_type="classification_multiclass", metrics=["accuracy"], chunk_size=200)
        cb.fit(ref); cb.estimate(cur)
    elif lib == "alibi-detect":
        KSDrift(ref[F].to_numpy(), p_val=0.05).predict(cur[F].to_numpy())
        codes = {c: i for i, c in enumerate("abcd")}
        ChiSquareDrift(ref[["cls"]].replace(codes).to_numpy(), p_val=0.05).predict(cur[["cls"]].replace(codes).to_numpy())
run()
t0 = time.perf_counter()
for _ in range(3):
    run()
print(f"{lib}: import {imp:.2f} s, window {(time.perf_counter() - t0) / 3 * 1000:.0f} ms")
