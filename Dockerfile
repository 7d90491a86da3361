# The exporter (and the simulator, same image): model-monitor under gunicorn.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY exporter ./exporter
RUN pip install --no-cache-dir ".[postgres]" && useradd --system --uid 10001 monitor
COPY model-monitor.yml /etc/model-monitor/model-monitor.yml
USER monitor
ENV MODEL_MONITOR_CONFIG=/etc/model-monitor/model-monitor.yml
EXPOSE 9747
HEALTHCHECK --interval=15s --timeout=3s --retries=5 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9747/-/healthy', timeout=2)"
CMD ["model-monitor", "serve", "--listen", "0.0.0.0:9747"]
