#!/bin/bash
# The seed's veth.sh (docker-container-usage-blog-2018.txt, post #3), as published, but for the
# ifconfig output of today's net-tools, which ends a name with ':' (sed strips it): without
# that fix every veth would miss and the loop would exec into every container for it.

VETHS=`ifconfig -a | grep veth | sed 's/[: ].*//g'`

DOCKERS=$(docker ps -a | grep Up | awk '{print $1}')

for VETH in $VETHS
do
  PEER_IFINDEX=`ethtool -S $VETH 2>/dev/null | grep peer_ifindex | sed 's/ *peer_ifindex: *//g'`
  for DOCKER in $DOCKERS
  do
    PEER_IF=`docker exec $DOCKER ip link list 2>/dev/null | grep "^$PEER_IFINDEX:" | awk '{print $2}' | sed 's/:.*//g'`
    if [ -z "$PEER_IF" ]; then
      continue
    else
      printf "%-10s is paired with %-10s on %-20s\n" $VETH $PEER_IF $DOCKER
      break
    fi
  done
done
