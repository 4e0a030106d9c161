# Airflow image with censustrace installed; used by docker-compose.yaml (Airflow services and the viewer).
# Production: the runtime requirements only (requirements.txt); the test tools (pytest, ruff, mypy,
# Playwright) are in requirements-dev.txt and never enter the image.
FROM apache/airflow:3.3.2-python3.11
COPY --chown=airflow:0 requirements.txt constraints.txt pyproject.toml README.md /opt/censustrace/
COPY --chown=airflow:0 src /opt/censustrace/src
RUN pip install --no-cache-dir -r /opt/censustrace/requirements.txt -c /opt/censustrace/constraints.txt \
 && pip install --no-cache-dir --no-deps /opt/censustrace
# Reviewed configuration: agreements and rules, data quality suites (read-only in the image).
COPY --chown=airflow:0 policies /opt/censustrace/policies
COPY --chown=airflow:0 expectations /opt/censustrace/expectations
COPY --chown=airflow:0 dags /opt/airflow/dags
COPY --chown=airflow:0 plugins /opt/airflow/plugins
