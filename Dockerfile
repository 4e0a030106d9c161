# Airflow image with censustrace installed; used by docker-compose.yaml.
FROM apache/airflow:3.3.2-python3.11
COPY --chown=airflow:0 requirements.txt constraints.txt pyproject.toml README.md /opt/censustrace/
COPY --chown=airflow:0 src /opt/censustrace/src
RUN pip install --no-cache-dir -r /opt/censustrace/requirements.txt -c /opt/censustrace/constraints.txt \
 && pip install --no-cache-dir --no-deps /opt/censustrace
COPY --chown=airflow:0 dags /opt/airflow/dags
COPY --chown=airflow:0 plugins /opt/airflow/plugins
