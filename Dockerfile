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
# Probes need no password and the check speaks TLS when the listener does, so this line holds
# with any --web.config.file (except required client certificates: use a TCP check there).
HEALTHCHECK --interval=15s --timeout=5s --retries=5 \
  CMD ["model-monitor", "healthcheck", "--web.listen-address=127.0.0.1:9747"]
CMD ["model-monitor", "serve", "--web.listen-address=0.0.0.0:9747"]
