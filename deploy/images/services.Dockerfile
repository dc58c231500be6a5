# RabbitMQ, Redis and Redis Sentinel for compose.yaml and deploy/compose/*.yaml, made from the
# machine's own debootstrap root (`ft runtimes build` makes funtainer/base) and Debian's apt:
# no registry needed. A container's command says which server it runs.
FROM funtainer/base:bookworm
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      rabbitmq-server redis-server redis-sentinel \
 && rm -rf /var/lib/apt/lists/* \
 && printf '%s\n' \
      'loopback_users = none' \
      '# A throttled event may wait its namespace window for hours (as `ft services up`).' \
      'consumer_timeout = 25200000' \
      > /etc/rabbitmq/rabbitmq.conf
