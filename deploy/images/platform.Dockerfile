# The platform image (gateway, initializer, invoker, remote pool: `ft <role>`), made from the
# machine's own debootstrap root and wheels built on this machine (scripts/build-images.sh puts
# them in the build context), so no registry is needed.
FROM funtainer/base:bookworm
COPY wheels /tmp/wheels
RUN python3 "$(ls /tmp/wheels/pip-*.whl)/pip" install --no-index --no-cache-dir \
      --break-system-packages --root-user-action ignore /tmp/wheels/*.whl \
 && rm -rf /tmp/wheels
COPY platform /tmp/platform
RUN pip install --no-index --no-deps --no-cache-dir --break-system-packages \
      --root-user-action ignore /tmp/platform/*.whl \
 && rm -rf /tmp/platform
ENTRYPOINT ["ft"]
